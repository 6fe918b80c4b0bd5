"""The fraud case on the kit's card transactions (realdata/fraud.yaml), through the documented path.

The user's steps, with LAKEHOUSE_SOURCES pointing at the mapping and a fresh home
(`bench.realdata` prepares both): one tick of the daily ingest schedule, then a backfill of
every day in one run (`dagster asset materialize --partition-range`: the ingest's single-run
backfill policy), the features and the training chain (rules, cascade, gate, champion), a
backfill of batch scores over the test window, and the evaluation report. Then ROC AUC and
average precision of the cascade's final score on the kit's test split (its `split` column),
beside the kit's `baseline_results.json`.

`slice_=True` is the same path over a thin slice for CI (2020-02-01 .. 2020-04-20, its
windows set by an environment variable as a user would), checking the path, not quality.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from bench.realdata import KIT, baseline, materialize, tick

SLICE = (date(2020, 2, 1), date(2020, 4, 20))
SLICE_WINDOWS = {
    "train": {"start": "2020-02-01", "end": "2020-03-09"},
    "validation": {"start": "2020-03-10", "end": "2020-04-09"},
    "test": {"start": "2020-04-10", "end": "2020-04-20"},
}
TRAINING = (
    "fraud/transaction_features,fraud/rule_lists,fraud/rule_lists_online,fraud/cascade_model,fraud/champion_model"
)


def run(home: Path, slice_: bool) -> dict:
    from lakehouse.common.local_servers import RedisServer

    if slice_:
        os.environ["LAKEHOUSE_FRAUD_WINDOWS"] = json.dumps(SLICE_WINDOWS)
    from lakehouse.fraud.settings import FraudSettings

    settings = FraudSettings()
    first, last = SLICE if slice_ else (settings.calendar.start, settings.windows.test.end)
    test = settings.windows.test
    with RedisServer() as redis_server:  # the feature store the training chain publishes the rules to
        os.environ["LAKEHOUSE_REDIS_URL"] = redis_server.url
        # The day after the last day, 00:30 in the calendar's zone: the schedule lands the last day.
        when = datetime.combine(last + timedelta(days=1), time(0, 30), tzinfo=UTC)
        runs = tick("fraud_daily_ingest_schedule", when)
        if not all(r["success"] for r in runs):
            raise RuntimeError(f"the ingest tick failed: {runs}")
        steps = {
            "backfill_s": materialize("fraud/transactions", partition_range=(first.isoformat(), last.isoformat())),
            "training_s": materialize(TRAINING),
            "scores_backfill_s": materialize(
                "fraud/scores", partition_range=(test.start.isoformat(), test.end.isoformat())
            ),
            "evaluation_s": materialize("fraud/evaluation"),
        }
    result = _metrics(home, settings, kit_split=None if slice_ else "test")
    return {
        "schedule_tick": {"schedule": "fraud_daily_ingest_schedule", "at": when.isoformat(), "runs": runs},
        "days": (last - first).days + 1,
        "steps_s": {k: round(v, 1) for k, v in steps.items()},
        **result,
    }


def _latest(key: list[str]) -> dict:
    import dagster as dg

    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    return (
        {k: v.value for k, v in event.asset_materialization.metadata.items() if isinstance(v.value, str | int | float)}
        if event
        else {}
    )


def _metrics(home: Path, settings, kit_split: str | None) -> dict:
    """ROC AUC and AP of the stored final scores on the kit's split, the report's figures, the baseline's."""
    import polars as pl

    from lakehouse.common.lake import Lake
    from lakehouse.fraud.model import ranking_metrics

    test = settings.windows.test
    days = [(test.start + timedelta(days=i)).isoformat() for i in range(test.days)]
    scores = Lake(str(home / "lake")).read_partitions("fraud", "scores", "day", days)
    kit = pl.read_parquet(
        KIT / "fraud" / "transactions.parquet", columns=["transaction_id", "is_fraud", "split"]
    ).rename({"transaction_id": "tx_id"})
    rows = scores.join(kit, on="tx_id", how="inner")
    if kit_split:
        rows = rows.filter(pl.col("split") == kit_split)
    ours = ranking_metrics(rows["is_fraud"].to_numpy(), rows["score"].to_numpy())
    reference = baseline("fraud")["lightgbm_raw_plus_windows"]
    report = _latest(["fraud", "evaluation"])
    keys = (
        "window",
        "model_version",
        "roc_auc",
        "average_precision",
        "recall_pct",
        "precision_pct",
        "baseline_recall_pct",
        "baseline_precision_pct",
        "layer1_block_share_pct",
        "layer3_share_pct",
        "layer3_fraud_share_pct",
        "layer3_lift_average_precision",
        "layer3_lift_recall_pct",
        "layer3_lift_precision_pct",
    )
    return {
        "evaluated_on": f"kit split '{kit_split}' ({test.start} .. {test.end})"
        if kit_split
        else f"the slice's test window {test.start} .. {test.end}",
        "transactions": rows.height,
        "frauds": int(rows["is_fraud"].sum()),
        "cascade": ours,
        "baseline": {
            "roc_auc": reference["roc_auc"],
            "average_precision": reference["average_precision"],
            "model": "the kit's LightGBM on raw fields + windows",
        },
        "meets_baseline": bool(
            ours["roc_auc"] >= reference["roc_auc"] and ours["average_precision"] >= reference["average_precision"]
        )
        if kit_split
        else None,
        "evaluation_report": {k: report.get(k) for k in keys},
        "training": {
            k: v
            for k, v in _latest(["fraud", "cascade_model"]).items()
            if k
            in (
                "split",
                "layer3_band",
                "review_threshold",
                "block_threshold",
                "layer2_features",
                "layer3_features",
                "model_version",
            )
        },
    }
