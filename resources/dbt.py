"""The dbt project: where it lives and its manifest, prepared by dagster-dbt.

`dagster dev` re-parses the project when it loads the code location (`prepare_if_dev`);
everywhere else the manifest is prepared ahead of time by
`dagster-dbt project prepare-and-package --file resources/dbt.py` (`make setup` runs it).
"""

import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
DBT_PROJECT = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
DBT_PROJECT.prepare_if_dev()
# The dbt installed beside this interpreter, whether or not its venv is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

_VERSIONS: dict[str, object] = {}  # dbt executable -> its version, for the life of the process


class DbtResource(DbtCliResource):
    """dagster-dbt's dbt resource, asking the dbt executable for its version once per process.

    dagster-dbt runs `dbt --version` (about 1.5 s here) the first time a resource instance invokes
    dbt, and Dagster builds the resource anew for every run: once per run that touches dbt.
    """

    @cached_property
    def _cli_version(self):
        if self.dbt_executable not in _VERSIONS:
            _VERSIONS[self.dbt_executable] = DbtCliResource._cli_version.func(self)
        return _VERSIONS[self.dbt_executable]
