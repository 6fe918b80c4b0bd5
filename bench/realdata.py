"""Real-data acceptance: each case's public dataset (../shared/realdata/) through its documented path.

    python -m bench.realdata                  # every case, one fresh home and process each
    python -m bench.realdata --case fraud     # one case (make realdata CASE=fraud)
    python -m bench.realdata --case fraud --slice   # the thin slice CI runs (not written to results)
    python -m bench.realdata --case fraud --variant lean   # the same code on less information

A case's `lean` variant takes the same kit with fewer columns or a coarser grain through its own
mapping file (`realdata/<case>_lean.yaml`), beside a plain baseline computed in the same run on the
same columns (`bench/realdata_<case>.py: run_lean`); it writes `realdata_<case>_lean.json` with
`ours`, `baseline` and `meets_baseline`.

A case's run is what a user does after writing the sources file `realdata/<case>.yaml` (a
folder and a mapping, no Python): with LAKEHOUSE_SOURCES pointing at it and a fresh project
home, the case's assets and jobs are materialized through Dagster with the default resources,
from the `dagster` CLI (`materialize`) or as the daemon would run a schedule tick (`tick`).
`bench/realdata_<case>.py` holds the steps and computes the case's metrics on the dataset's
split beside the dataset's own baseline; a full run writes `bench/results/realdata_<case>.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import ROOT, header, write_results

CASES = ("churn", "forecast", "fraud", "triage")
VARIANTS = ("kit", "lean")
KIT = ROOT.parent / "shared" / "realdata"


def baseline(directory: str, name: str = "baseline_results.json") -> dict:
    """The kit's own baseline figures for a case."""
    return json.loads((KIT / directory / name).read_text())


def prepare_home(home: Path, case: str, variant: str = "kit") -> None:
    """A fresh project home whose Dagster instance and sources are the user's, in this process's environment."""
    if home.exists():
        shutil.rmtree(home)
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    os.environ.update(
        LAKEHOUSE_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        LAKEHOUSE_SOURCES=str(ROOT / "realdata" / (f"{case}.yaml" if variant == "kit" else f"{case}_{variant}.yaml")),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
    )
    for name in ("LAKEHOUSE_LAKE_URL", "MLFLOW_TRACKING_URI", "LAKEHOUSE_SCALE", "LAKEHOUSE_SEED"):
        os.environ.pop(name, None)


def materialize(
    select: str,
    *,
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    config: dict | None = None,
) -> float:
    """`dagster asset materialize -m definitions --select ...` as a user types it; its wall time.
    A partition range is one run when the selected assets' backfill policy allows it."""
    args = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "definitions",
        "--select",
        select,
    ]
    if partition:
        args += ["--partition", partition]
    if partition_range:
        args += ["--partition-range", f"{partition_range[0]}...{partition_range[1]}"]
    if config:
        args += ["--config-json", json.dumps(config)]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} failed:\n{(done.stdout + done.stderr)[-6000:]}")
    return time.perf_counter() - started


def tick(schedule: str, when: datetime) -> list[dict]:
    """One tick of a schedule at `when`, its run requests executed as the daemon would launch them.
    Returns each run's partition, success and the steps that failed."""
    import dagster as dg

    import definitions

    defs = definitions.defs()
    schedule_def = defs.resolve_schedule_def(schedule)
    instance = dg.DagsterInstance.get()
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    ) as context:
        requests = schedule_def.evaluate_tick(context).run_requests or []
    job = defs.resolve_job_def(schedule_def.job_name)
    runs = []
    for request in requests:
        result = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            run_config=request.run_config or None,
            tags=request.tags,
            raise_on_error=False,
        )
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        runs.append({"partition": request.partition_key, "success": result.success, "failed_steps": failed})
    return runs


def run_case(case: str, slice_: bool, home: Path | None, variant: str = "kit") -> dict:
    name = f"realdata_{case}" if variant == "kit" else f"realdata_{case}_{variant}"
    home = home or Path(tempfile.mkdtemp(prefix=f"{name.replace('_', '-')}-"))
    prepare_home(home, case, variant)
    before = header(name, 1)  # the machine's load and the code as the run starts
    started = time.perf_counter()
    module = importlib.import_module(f"bench.realdata_{case}")
    result = (module.run if variant == "kit" else getattr(module, f"run_{variant}"))(home, slice_)
    payload = {
        **before,
        "case": case,
        "variant": variant,
        "slice": slice_,
        "home": str(home),
        "wall_s": round(time.perf_counter() - started, 1),
        **result,
    }
    if not slice_:
        print(f"results: {write_results(name, payload).relative_to(ROOT)}")
    return payload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, help="default: every case, each in its own process")
    parser.add_argument("--slice", action="store_true", help="the thin slice CI runs; results are not written")
    parser.add_argument("--variant", choices=VARIANTS, help="default: the kit, then its lean variant")
    parser.add_argument("--home", type=Path, help="project home (default: a fresh temporary folder)")
    args = parser.parse_args()
    if args.case is None or args.variant is None:
        extra = ["--slice"] if args.slice else []
        runs = [
            [sys.executable, "-m", "bench.realdata", "--case", case, "--variant", variant, *extra]
            for case in ([args.case] if args.case else CASES)
            for variant in ([args.variant] if args.variant else VARIANTS)
            if variant == "kit" or (ROOT / "realdata" / f"{case}_{variant}.yaml").exists()
        ]
        return max(subprocess.run(run, cwd=ROOT).returncode for run in runs)
    payload = run_case(args.case, args.slice, args.home, args.variant)
    print(json.dumps({k: v for k, v in payload.items() if k not in ("machine", "git")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
