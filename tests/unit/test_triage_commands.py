"""The on-demand commands of docs/triage.md stay true: each documented `make` line selects triage assets or a
triage job that exist, writes partition keys as the definitions do, and gives run config its job accepts."""

import json
import re
import shlex
from pathlib import Path

import dagster as dg

DOC = Path(__file__).resolve().parents[2] / "docs" / "triage.md"


def _commands() -> list[list[str]]:
    section = DOC.read_text().split("## On-demand commands", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.startswith("make ")]


def test_each_documented_command_names_real_assets_partitions_and_run_config():
    from assets.triage import ASSETS, CHECKS
    from resources import default_resources
    from sensors.triage import JOBS

    seen = set()
    for make, target, *arguments in _commands():
        params = dict(argument.split("=", 1) for argument in arguments)
        seen.add(target)
        if target == "rollback":
            selection = ["triage/champion_model"]
            reason = {"rollback_to": params["VERSION"], "reason": params["REASON"]}
            config = {"ops": {"triage__champion_model": {"config": reason}}}
        else:
            selection = params["SELECT"].split(",") if target == "materialize" else None
            config = json.loads(params.get("CONFIG", "{}"))
        jobs = [*JOBS] + ([dg.define_asset_job("on_demand", selection=selection)] if selection else [])
        definitions = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=jobs, resources=default_resources())
        job = definitions.resolve_job_def("on_demand" if selection else params["JOB"])
        dg.validate_run_config(job, config)  # raises on run config the job does not take
        keys = params.get("PARTITION_RANGE", params.get("PARTITION", "")).split("...")
        assert all(re.fullmatch(r"\d{4}-\d{2}", k) for k in keys if k), (make, target, keys)
    assert seen == {"materialize", "job", "rollback"}
