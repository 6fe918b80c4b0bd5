"""The fraud case on the kit's card transactions, through the documented path only.

`run(home, slice)` points LAKEHOUSE_SOURCES at `realdata/fraud.yaml` (a mapping and settings,
no Python), starts from a fresh home, and materializes the case as a user would: the code
location's jobs with their default resources and no run config except the documented
per-run choices (partition selection): one tick of the daily ingest schedule, then one
single-run backfill of every day, the training job (rules, cascade, gate, champion), a
backfill of batch scores over the test window, and the evaluation report. Then it computes
ROC AUC and average precision of the cascade's final score on the kit's test split (its
`split` column) and returns them beside the kit's `baseline_results.json`.

`slice=True` is the same path over a thin slice for CI (2020-02-01 .. 2020-04-20, windows
set by environment variables as a user would), checking that the path works, not quality.
Run it in a fresh process: the code location reads the calendar when it loads.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.common import ROOT

KIT = ROOT.parent / "shared" / "realdata" / "fraud"
SOURCES = ROOT / "realdata" / "fraud.yaml"
SLICE = (date(2020, 2, 1), date(2020, 4, 20))
SLICE_ENV = {  # the slice's windows: three fraud episodes, one in each
    "LAKEHOUSE_FRAUD_WINDOWS": json.dumps({"train": {"start": "2020-02-01", "end": "2020-03-09"}, "validation": {"start": "2020-03-10", "end": "2020-04-09"}, "test": {"start": "2020-04-10", "end": "2020-04-20"}}),
}


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _prepare(home: Path, slice: bool) -> None:
    if home.exists():
        shutil.rmtree(home)
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    os.environ.update(LAKEHOUSE_SOURCES=str(SOURCES), LAKEHOUSE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    for name in ("LAKEHOUSE_LAKE_URL", "MLFLOW_TRACKING_URI", *SLICE_ENV):
        os.environ.pop(name, None)
    if slice:
        os.environ.update(SLICE_ENV)


def _check(result, what: str) -> None:
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        detail = failure.event_specific_data.error.to_string() if failure else "no step failure recorded"
        raise RuntimeError(f"{what} failed: {detail[-3000:]}")


def run(home: Path, slice: bool) -> dict:
    from lakehouse.common.local_servers import RedisServer

    started = time.perf_counter()
    _prepare(home, slice)
    with RedisServer() as redis_server:
        os.environ["LAKEHOUSE_REDIS_URL"] = redis_server.url
        try:
            timings = _materialize(slice)
        finally:
            os.environ.pop("LAKEHOUSE_REDIS_URL", None)
    result = _metrics(home, slice)
    result.update(timings, wall_seconds=round(time.perf_counter() - started, 1), slice=slice)
    return result


def _materialize(slice: bool) -> dict:
    import dagster as dg

    import definitions
    from assets.fraud.partitions import daily
    from lakehouse.fraud.settings import FraudSettings

    settings = FraudSettings()
    if daily.start.date() != settings.calendar.start:
        raise RuntimeError(f"the code location was loaded with another calendar ({daily.start.date()}): run in a fresh process")
    defs = definitions.defs()
    instance = dg.DagsterInstance.get()
    first, last = SLICE if slice else (settings.calendar.start, settings.windows.test.end)
    days = _days(first, last)
    timings = {}

    def run_job(name: str, what: str, **kwargs):
        t = time.perf_counter()
        result = defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)
        _check(result, what)
        timings[f"{what}_seconds"] = round(time.perf_counter() - t, 1)
        return result

    # One tick of the daily ingest schedule (the day after the last day, 00:30 in the calendar's zone).
    schedule = defs.get_schedule_def("fraud_daily_ingest_schedule")
    tick = datetime.combine(date.fromisoformat(days[-1]) + timedelta(days=1), datetime.min.time().replace(minute=30), tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    run_job("fraud_daily_ingest", "schedule_tick", partition_key=request.partition_key, tags=request.tags)
    # A backfill of every day in one run (the ingest's single-run backfill policy).
    run_job("fraud_daily_ingest", "backfill", tags=_range(days[0], days[-1]))
    run_job("fraud_training", "training")
    test = settings.windows.test
    run_job("fraud_daily_scoring", "scoring", tags=_range(test.start.isoformat(), test.end.isoformat()))
    run_job("fraud_evaluation", "evaluation")
    timings["days"] = len(days)
    return timings


def _range(first: str, last: str) -> dict:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _latest(key: list[str]) -> dict:
    import dagster as dg

    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items() if not isinstance(v.value, dict)} if event else {}


def _metrics(home: Path, slice: bool) -> dict:
    """ROC AUC and AP of the stored final scores on the kit's test split, the report's figures, the baseline's."""
    import polars as pl

    from lakehouse.common.lake import Lake
    from lakehouse.fraud.model import ranking_metrics
    from lakehouse.fraud.settings import FraudSettings

    settings = FraudSettings()
    test = settings.windows.test
    scores = Lake(str(home / "lake")).read_partitions("fraud", "scores", "day", _days(test.start, test.end))
    kit = pl.read_parquet(KIT / "transactions.parquet", columns=["transaction_id", "is_fraud", "split"]).rename({"transaction_id": "tx_id"})
    split = "test" if not slice else None
    rows = scores.join(kit, on="tx_id", how="inner")
    if split:
        rows = rows.filter(pl.col("split") == split)
    ranking = ranking_metrics(rows["is_fraud"].to_numpy(), rows["score"].to_numpy())
    report = _latest(["fraud", "evaluation"])
    model = _latest(["fraud", "cascade_model"])
    baseline = json.loads((KIT / "baseline_results.json").read_text())
    reference = baseline["lightgbm_raw_plus_windows"]
    keys = ("recall_pct", "precision_pct", "layer1_block_share_pct", "layer3_share_pct", "layer3_fraud_share_pct", "layer3_lift_average_precision",
            "layer3_lift_recall_pct", "layer3_lift_precision_pct", "baseline_recall_pct", "baseline_precision_pct", "roc_auc", "average_precision")
    return {
        "case": "fraud",
        "dataset": "Sparkov card transactions, 43 customers (shared/realdata/fraud)",
        "evaluated_on": f"kit split '{split}' ({test.start} .. {test.end})" if split else f"slice test window {test.start} .. {test.end}",
        "transactions": rows.height,
        "frauds": int(rows["is_fraud"].sum()),
        "cascade": {"roc_auc": ranking["roc_auc"], "average_precision": ranking["average_precision"]},
        "baseline": {"roc_auc": reference["roc_auc"], "average_precision": reference["average_precision"], "model": "LightGBM raw + windows (kit)"},
        "meets_baseline": bool(ranking["roc_auc"] >= reference["roc_auc"] and ranking["average_precision"] >= reference["average_precision"]) if split else None,
        "evaluation_report": {k: report.get(k) for k in (*keys, "window", "model_version")},
        "training": {k: model.get(k) for k in ("split", "layer3_band", "review_threshold", "block_threshold", "layer2_features", "layer3_features")},
        "gate": "passed" if report else "not reached",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
