"""The dbt project: where it lives and its manifest, prepared by dagster-dbt.

`dagster dev` re-parses the project when it loads the code location (`prepare_if_dev`);
everywhere else the manifest is prepared ahead of time by
`dagster-dbt project prepare-and-package --file resources/dbt.py` (`make setup` runs it).
"""

import sys
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.asset_utils import DBT_INDIRECT_SELECTION_ENV
from dagster_dbt.core.dbt_event_iterator import DbtDagsterEventType

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

    def invoke(
        self, args: list[str], *, context: AssetExecutionContext, env: Mapping[str, str]
    ) -> Iterator[DbtDagsterEventType]:
        """`dbt <args>` run in this process, warm (lakehouse.churn.dbt_runner), for the selection of a
        `@dbt_assets` step: the same selection, the same Dagster events (materializations, check results) as
        `cli(...).stream()`, without a dbt subprocess per step or dagster-dbt's own dbt adapter in this process
        (it serves only row counts and column metadata, which these assets do not fetch)."""
        from dagster_dbt.asset_utils import (
            extract_runtime_selection_from_args,
            get_updated_cli_invocation_params_for_context,
        )
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

        from lakehouse.churn import dbt_runner

        cleaned, selects, excludes = extract_runtime_selection_from_args(args)
        params = get_updated_cli_invocation_params_for_context(
            context=context,
            manifest={},
            dagster_dbt_translator=DagsterDbtTranslator(),
            runtime_selects=selects,
            runtime_excludes=excludes,
        )
        project_dir = Path(params.dbt_project.project_dir if params.dbt_project else self.project_dir)
        selection = {DBT_INDIRECT_SELECTION_ENV: params.indirect_selection} if params.indirect_selection else {}
        invocation = dbt_runner.invoke(
            [*cleaned, *params.selection_args],
            env={**env, **selection, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
            target_path=project_dir / self._get_unique_target_path(context=context),
            project_dir=project_dir,
            profiles_dir=Path(self.profiles_dir or project_dir),
        )
        context.log.info(
            f"dbt {' '.join(args[:1])}: {len(invocation.events)} results in {invocation.seconds:.2f} s "
            f"(of which parsing the project {invocation.parse_seconds:.2f} s), in this process"
        )
        for raw in invocation.events:
            yield from DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={}).to_default_asset_events(
                manifest=params.manifest,
                dagster_dbt_translator=params.dagster_dbt_translator,
                context=context,
                project=params.dbt_project,
            )
        invocation.raise_on_error()
