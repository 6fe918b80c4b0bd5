"""The dbt resource asks the dbt executable for its version once per process, not once per run."""

import dagster_dbt.core.resource as dbt_core

from resources.dbt import DBT_PROJECT, DbtResource


def test_dbt_version_is_asked_once_however_many_resources_are_built(monkeypatch, tmp_path):
    calls = []

    def version_output(command):
        calls.append(command)
        return b"Core:\n  - installed: 1.11.2\n"

    monkeypatch.setattr(dbt_core, "check_output", version_output)
    executable = tmp_path / "dbt"  # an executable of this test's own: nothing cached for it before
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    executable = str(executable)
    runs = [DbtResource(project_dir=DBT_PROJECT.project_dir, dbt_executable=executable) for _ in range(3)]
    assert {str(r._cli_version) for r in runs} == {"1.11.2"}
    assert calls == [[executable, "--version"]]
