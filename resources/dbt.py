"""The dbt project: where it lives and its manifest, prepared by dagster-dbt.

`dagster dev` re-parses the project when it loads the code location (`prepare_if_dev`);
everywhere else the manifest is prepared ahead of time by
`dagster-dbt project prepare-and-package --file resources/dbt.py` (`make setup` runs it).
"""

import sys
from pathlib import Path

from dagster_dbt import DbtProject

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_PROJECT = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
DBT_PROJECT.prepare_if_dev()
# The dbt installed beside this interpreter, whether or not its venv is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
