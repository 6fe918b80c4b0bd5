"""Real-data acceptance of the triage case: CLINC150 (the kit's `triage/`) through the documented path.

`run(home, slice)` points `LAKEHOUSE_SOURCES` at `realdata/triage.yaml` and, in a fresh process on a
fresh home, does what a user does with the code location's jobs and default resources:

1. a single-run backfill of `tickets_clean` + `agent_labels` over every month of the file (the
   official split mapped to three months);
2. the quarterly retraining schedule's tick that precedes the evaluation window (cut-off 2025-01-01:
   it trains on the train month, and gates, calibrates and fits the out-of-scope rule on the
   validation month);
3. the monthly schedule's tick for each month of the evaluation window (the test month is routed by
   the champion, published and its confusion matrix drawn);
4. the evaluation and ROI reports;

then reads the evaluation report (the official test split) and returns it beside the kit's baseline
(`baseline_results.json`), with the training time and the wall time. `slice=True` keeps eight
intents and a tenth of the out-of-scope queries (a filter added to a copy of the mapping), for CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import ROOT, clean_env, emit, run_worker

SOURCES = ROOT / "realdata" / "triage.yaml"
SLICE_FILTER = (
    "intent IN ('translate', 'transfer', 'timer', 'weather', 'book_flight', 'pay_bill', 'alarm', 'recipe') "
    "OR (intent = 'oos' AND row_in_source % 10 = 0)"
)
METRICS = ("accuracy", "macro_f1", "in_scope_accuracy", "out_of_scope_recall", "auto_rate", "auto_precision")
# The kit's baseline figures under our names (test split).
BASELINE_NAMES = {
    "accuracy": "accuracy",
    "macro_f1": "macro_f1",
    "in_scope_accuracy": "in_scope_accuracy",
    "out_of_scope_recall": "oos_recall",
    "auto_rate": "share_maxprob_gt_0_85",
    "auto_precision": "precision_at_maxprob_gt_0_85",
}


def sources_file(home: Path, slice: bool) -> Path:
    """The kit's sources file; for a slice, a copy in the home (folder made absolute) with a filter on each table."""
    if not slice:
        return SOURCES
    import yaml

    spec = yaml.safe_load(SOURCES.read_text())
    spec["triage"]["folder"] = str((SOURCES.parent / spec["triage"]["folder"]).resolve())
    for table in spec["triage"]["tables"].values():
        table["filter"] = SLICE_FILTER
    path = home / "triage-slice.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run(home: Path, slice: bool) -> dict:
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    sources = sources_file(home, slice)
    env = clean_env(
        LAKEHOUSE_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        LAKEHOUSE_SOURCES=str(sources),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env = {k: v for k, v in env.items() if not k.startswith("LAKEHOUSE_TRIAGE_")}
    args = ["--worker", "--home", str(home), *(["--slice"] if slice else [])]
    measured = run_worker("bench.realdata_triage", args, env=env, workdir=home, tag="realdata_triage")
    if not measured.ok:
        raise RuntimeError(
            f"the triage real-data run failed ({measured.killed or measured.returncode}):\n{measured.log_tail}"
        )
    return {
        **measured.result,
        "wall_s": round(measured.wall_s, 1),
        "peak_rss_mib": round(measured.max_rss_bytes / 2**20),
    }


def _execute(defs, instance, request, job_name: str) -> None:
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config=request.run_config,
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        raise_on_error=False,
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_step_failure]
        raise RuntimeError(f"{job_name} {request.partition_key or ''} failed: {failures[:3]}")


def work(home: Path, slice: bool) -> dict:
    """The user's path, in this process (LAKEHOUSE_SOURCES and LAKEHOUSE_HOME are set by `run`)."""
    import dagster as dg

    import definitions
    from assets.triage import ASSETS, CHECKS
    from assets.triage.partitions import monthly
    from lakehouse.common.settings import DateRange, configured_sources_path
    from lakehouse.common.sources import load_sources
    from lakehouse.triage.pipeline import CASE
    from lakehouse.triage.settings import TriageSettings

    settings = TriageSettings.load(configured_sources_path())
    window = settings.evaluation
    if not isinstance(window, DateRange):
        raise ValueError("the kit's sources file gives the evaluation window as dates (the official test split)")
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    defs = definitions.defs()

    def materialize(selection: str, **kwargs):
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
            **kwargs,
        )
        if not result.success:
            raise RuntimeError(f"{selection} failed: {[e.message for e in result.all_events if e.is_step_failure][:3]}")
        return result

    started = time.perf_counter()
    timings = {}

    # 1. Backfill the ingestion over the file's months, one run (the asset's backfill policy).
    months = [k for k in monthly.get_partition_keys() if k <= window.end.isoformat()]
    backfill = {"dagster/asset_partition_range_start": months[0], "dagster/asset_partition_range_end": months[-1]}
    materialize("key:triage/tickets_clean or key:triage/agent_labels", tags=backfill)
    timings["ingest_s"] = time.perf_counter() - started

    # 2. The quarterly retraining's tick that precedes the evaluation window.
    retraining = defs.resolve_schedule_def("triage_quarterly_retraining_schedule")
    tick = datetime(window.start.year, window.start.month, 1, 3, tzinfo=_zone(settings))
    while tick.month not in (1, 4, 7, 10):
        tick = _previous_month(tick)
    for request in retraining.evaluate_tick(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
    ).run_requests:
        _execute(defs, instance, request, retraining.job_name)
    timings["retraining_s"] = time.perf_counter() - started - timings["ingest_s"]

    # 3. The monthly schedule's tick for each month of the evaluation window (the 1st of the following month).
    schedule = defs.resolve_schedule_def("triage_monthly_schedule")
    routed = [m for m in months if window.start.isoformat()[:7] <= m[:7] <= window.end.isoformat()[:7]]
    for month in routed:
        first = datetime.fromisoformat(month)
        tick = (first.replace(day=28) + timedelta(days=4)).replace(day=1, hour=2, tzinfo=_zone(settings))
        for request in schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        ).run_requests:
            _execute(defs, instance, request, schedule.job_name)

    # 4. The reports.
    materialize("key:triage/evaluation_report or key:triage/roi_report")
    total = time.perf_counter() - started

    from lakehouse.common.lake import Lake

    lake = Lake(str(home / "lake"))
    report = lake.read(CASE, "evaluation_report").row(0, named=True)
    model = instance.get_latest_materialization_event(dg.AssetKey([CASE, "model"])).asset_materialization.metadata
    folder = load_sources(os.environ["LAKEHOUSE_SOURCES"]).case(CASE).folder
    baseline = json.loads((folder / "baseline_results.json").read_text())["test"]
    ours = {k: round(float(report[k]), 4) for k in METRICS}
    theirs = {k: round(float(baseline[v]), 4) for k, v in BASELINE_NAMES.items()}
    return {
        "case": CASE,
        "dataset": "CLINC150 (data_full), official split",
        "slice": slice,
        "evaluated_months": report["months"],
        "tickets": int(report["tickets"]),
        "metrics": ours,
        "baseline": theirs,
        "at_least_baseline": {
            k: ours[k] >= theirs[k] for k in ("accuracy", "in_scope_accuracy", "out_of_scope_recall", "auto_rate")
        }
        | {"auto_precision": ours["auto_precision"] >= theirs["auto_precision"]},
        "model": {
            "train_seconds": model["train_seconds"].value,
            "training_rows": model["training_rows"].value,
            "steps": model["steps"].value,
            "temperature": model["temperature"].value,
            "out_of_scope_threshold": model["out_of_scope_threshold"].value,
            "auto_threshold": model["auto_threshold"].value,
            "auto_precision_target_met": model["auto_precision_target_met"].value,
            "gate": model["gate"].value,
        },
        "timings_s": {k: round(v, 1) for k, v in {**timings, "total_s": total}.items()},
        "threshold_floor": settings.confidence_threshold,
        "auto_precision_target": settings.auto_precision_target,
        "max_in_scope_rejection": settings.out_of_scope.max_in_scope_rejection,
    }


def _zone(settings):
    from zoneinfo import ZoneInfo

    return ZoneInfo(settings.calendar.timezone)


def _previous_month(moment: datetime) -> datetime:
    return (moment.replace(day=1) - timedelta(days=1)).replace(day=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--slice", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        emit(args.out, work(args.home, args.slice))
        return 0
    print(json.dumps(run(args.home, args.slice), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
