"""The fraud case on the kit's card transactions (realdata/fraud.yaml), through the documented path.

The user's steps, with LAKEHOUSE_SOURCES pointing at the mapping and a fresh home
(`bench.realdata` prepares both): one tick of the daily ingest schedule, then a backfill of
every day in one run (`dagster asset materialize --partition-range`: the ingest's single-run
backfill policy), the features and the training chain (rules, cascade, gate, champion, the
champion's rules to Redis), a backfill of batch scores over the test window, and the evaluation
report. The scores and the report exist whether or not the gate passes (a refused first model
scores in shadow). Then ROC AUC and average precision of the cascade's final score on the kit's
test split (its `split` column), beside the kit's `baseline_results.json`, and the gate's verdict.

`run_lean` is the same path on the lean mapping (realdata/fraud_lean.yaml: id, time, customer, card,
merchant, amount and label; no validation window given), beside a plain baseline computed in the
same run on the same columns: LightGBM on the amount, the local hour and weekday, and 1/7/30-day
customer and merchant windows (count, mean amount) plus the seconds since the customer's previous
payment, trained on the kit's training split.

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
LEAN_SLICE_WINDOWS = {"test": SLICE_WINDOWS["test"], "warmup": "1d", "validation_share": 0.45}  # carved: 03-10..04-09
TRAINING = "fraud/transaction_features,fraud/rule_lists,fraud/model,fraud/champion_model,fraud/rule_lists_online"
REPORT_KEYS = (
    "window",
    "model_version",
    "shadow",
    "roc_auc",
    "average_precision",
    "layer2_only_average_precision",
    "card_precision_at_100",
    "recall_pct",
    "precision_pct",
    "baseline_recall_pct",
    "baseline_precision_pct",
    "layer1_block_share_pct",
    "layer3_share_pct",
    "layer3_fraud_share_pct",
    "frauds_below_band",
    "layer3_lift_average_precision",
    "layer3_lift_recall_pct",
    "layer3_lift_precision_pct",
)
TRAINING_KEYS = (
    "split",
    "trained_until",
    "layer3_band",
    "layer3_validation_share",
    "validation_frauds_below_band",
    "review_threshold",
    "block_threshold",
    "layer2_features",
    "layer3_features",
    "model_version",
    "layer3_only_average_precision",
)


def run(home: Path, slice_: bool) -> dict:
    """The kit's mapping through the documented path; its figures beside the kit's own baseline."""
    if slice_:
        os.environ["LAKEHOUSE_FRAUD_WINDOWS"] = json.dumps(SLICE_WINDOWS)
    steps, settings, context = _documented_path(slice_)
    result = _metrics(home, settings, kit_split=None if slice_ else "test")
    reference = baseline("fraud")["lightgbm_raw_plus_windows"]
    ours = result["cascade"]
    result["baseline"] = {
        "roc_auc": reference["roc_auc"],
        "average_precision": reference["average_precision"],
        "model": "the kit's LightGBM on raw fields + windows",
    }
    result["meets_baseline"] = (
        bool(ours["roc_auc"] >= reference["roc_auc"] and ours["average_precision"] >= reference["average_precision"])
        if not slice_
        else None
    )
    return {**context, "steps_s": steps, **result}


def run_lean(home: Path, slice_: bool) -> dict:
    """The lean mapping through the same path, and the plain baseline on the same columns in the same run."""
    if slice_:
        os.environ["LAKEHOUSE_FRAUD_WINDOWS"] = json.dumps(LEAN_SLICE_WINDOWS)
    steps, settings, context = _documented_path(slice_)
    result = _metrics(home, settings, kit_split=None if slice_ else "test")
    plain = lean_baseline(settings, slice_)
    ours = result["cascade"]
    return {
        **context,
        "steps_s": steps,
        "columns": "id, time, customer, card, merchant, amount, label (channel: one constant value)",
        "ours": ours,
        "baseline": plain,
        "meets_baseline": bool(
            ours["roc_auc"] >= plain["roc_auc"] and ours["average_precision"] >= plain["average_precision"]
        ),
        **{k: v for k, v in result.items() if k != "cascade"},
    }


def _documented_path(slice_: bool) -> tuple[dict, object, dict]:
    from lakehouse.common.local_servers import RedisServer
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.fraud.settings import FraudSettings

    settings = FraudSettings.load(configured_sources_path())
    first, last = SLICE if slice_ else (settings.calendar.start, settings.windows.test.end)
    test = settings.windows.test
    with RedisServer() as redis_server:  # the feature store the training chain publishes the champion's rules to
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
    context = {
        "schedule_tick": {"schedule": "fraud_daily_ingest_schedule", "at": when.isoformat(), "runs": runs},
        "days": (last - first).days + 1,
    }
    return {k: round(v, 1) for k, v in steps.items()}, settings, context


def _latest(key: list[str]) -> dict:
    import dagster as dg

    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    return (
        {k: v.value for k, v in event.asset_materialization.metadata.items() if isinstance(v.value, str | int | float)}
        if event
        else {}
    )


def _verdict(home: Path, settings) -> dict:
    """The gate's verdict on the latest version as recorded in MLflow, and who is champion."""
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.promotion import GATE_VERDICT_TAG, Verdict
    from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry

    h = LakehouseHome(home)
    registry = Registry(h.mlflow_uri, h.mlflow_artifacts)
    name = settings.cascade.registered_model_name
    version = registry.alias_version(name, CHALLENGER)
    tags = registry.client.get_model_version(name, version).tags
    verdict = Verdict.from_json(tags[GATE_VERDICT_TAG])
    return {
        "version": version,
        "passed": verdict.passed,
        "summary": verdict.summary(),
        "champion": registry.alias_version(name, CHAMPION),
        "floors": verdict.floors_frame().to_dicts(),
        "comparisons": verdict.comparisons_frame().to_dicts(),
    }


def _metrics(home: Path, settings, kit_split: str | None) -> dict:
    """ROC AUC and AP of the stored final scores on the kit's split, the report's figures and the verdict."""
    import polars as pl

    from lakehouse.common.lake import Lake
    from lakehouse.fraud.model import ranking_metrics

    test = settings.windows.test
    days = [(test.start + timedelta(days=i)).isoformat() for i in range(test.days)]
    scores = Lake(str(home / "lake")).read_partitions("fraud", "scores", "day", days).drop("is_fraud")
    kit = pl.read_parquet(
        KIT / "fraud" / "transactions.parquet", columns=["transaction_id", "is_fraud", "split"]
    ).rename({"transaction_id": "tx_id"})
    rows = scores.join(kit, on="tx_id", how="inner")
    if kit_split:
        rows = rows.filter(pl.col("split") == kit_split)
    report = _latest(["fraud", "evaluation"])
    return {
        "evaluated_on": f"kit split '{kit_split}' ({test.start} .. {test.end})"
        if kit_split
        else f"the slice's test window {test.start} .. {test.end}",
        "transactions": rows.height,
        "frauds": int(rows["is_fraud"].sum()),
        "scored_in_shadow": bool(rows["shadow"].any()),
        "cascade": ranking_metrics(rows["is_fraud"].to_numpy(), rows["score"].to_numpy()),
        "gate": _verdict(home, settings),
        "evaluation_report": {k: report.get(k) for k in REPORT_KEYS},
        "training": {k: v for k, v in _latest(["fraud", "model"]).items() if k in TRAINING_KEYS},
    }


def lean_baseline(settings, slice_: bool) -> dict:
    """LightGBM on the lean columns plus 1/7/30-day customer and merchant windows, trained before the test
    window (the kit's training split, or the slice's days before its test window) and scored on it."""
    import time as clock

    import lightgbm as lgb
    import polars as pl

    from lakehouse.fraud.model import ranking_metrics

    started = clock.perf_counter()
    t = pl.read_parquet(KIT / "fraud" / "transactions.parquet").sort("transaction_time_utc", "transaction_id")
    t = t.with_columns(_one=pl.lit(1, pl.Int32), _t=pl.col("transaction_time_utc"))
    windows = []
    for key, prefix in (("ssn", "customer"), ("merchant", "merchant")):
        for days in (1, 7, 30):
            count = pl.col("_one").rolling_sum_by("_t", window_size=f"{days}d", closed="left").over(key)
            total = pl.col("amount").rolling_sum_by("_t", window_size=f"{days}d", closed="left").over(key)
            windows += [
                count.fill_null(0).alias(f"{prefix}_count_{days}d"),
                pl.when(count > 0).then(total / count).otherwise(None).alias(f"{prefix}_mean_{days}d"),
            ]
    local = pl.col("_t").dt.convert_time_zone(settings.hour_timezone)
    t = t.with_columns(windows).with_columns(
        secs_since_previous=(pl.col("_t") - pl.col("_t").shift(1).over("ssn")).dt.total_seconds(),
        hour=local.dt.hour(),
        weekday=local.dt.weekday(),
        day=pl.col("_t").dt.date(),
    )
    # The kit baseline script's column order (raw fields, the windows, the gap last): on this data the plain
    # model's result depends on it (column sampling with a fixed seed).
    columns = ["amount", "hour", "weekday", *[w.meta.output_name() for w in windows], "secs_since_previous"]
    test = settings.windows.test
    if slice_:
        first, _ = SLICE
        train = t.filter(pl.col("day").is_between(first, test.start - timedelta(days=1)))
        scored = t.filter(pl.col("day").is_between(test.start, test.end))
    else:
        train, scored = t.filter(pl.col("split") == "train"), t.filter(pl.col("split") == "test")
    model = lgb.LGBMClassifier(
        n_estimators=400,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=0,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(train.select(columns).to_pandas(), train["is_fraud"].to_numpy())
    probability = model.predict_proba(scored.select(columns).to_pandas())[:, 1]
    return {
        **ranking_metrics(scored["is_fraud"].to_numpy(), probability),
        "model": "LightGBM (the kit baseline's parameters) on amount, local hour and weekday, seconds since the "
        "customer's previous payment, 1/7/30-day customer and merchant windows (count, mean amount)",
        "trained_on": f"{train['day'].min()} .. {train['day'].max()} ({train.height:,} payments)",
        "seconds": round(clock.perf_counter() - started, 1),
    }
