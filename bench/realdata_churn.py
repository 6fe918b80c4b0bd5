"""The churn case on the kit's RavenStack tables (realdata/churn.yaml): the documented path, then the
model's figures on the kit's own evaluation rows beside the kit's LightGBM baseline.

The user's steps: load the raw tables and the dbt staging, backfill the weekly features over
the whole history in one run, train (the monthly training job, here as its schedule would
tick on the first Monday of December 2024). The kit's data carries no out-of-time signal
(its README), so the seed's Go/No-Go gate is expected to refuse the model: the figures are
those of the challenger it refused, scored at each kit snapshot from the features of the Monday
on or before it (facts strictly before that Monday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from bench.realdata import KIT, baseline, materialize, tick

RAW = ["customers", "usage_daily", "support_tickets", "invoices", "renewals"]
STAGING = [
    "stg_churn__customers",
    "stg_churn__usage_weekly",
    "stg_churn__support_tickets",
    "stg_churn__invoices",
    "stg_churn__renewals",
]
TRAINING_TICK = datetime(2024, 12, 2, 5, 0, tzinfo=UTC)  # the first Monday of December 2024, 05:00


def _keys(names: list[str]) -> str:
    return ",".join(f"churn/{n}" for n in names)


def run(home: Path, slice_: bool) -> dict:
    from lakehouse.churn.model import feature_matrix, load_model
    from lakehouse.churn.pipeline import ChurnStore
    from lakehouse.churn.settings import ChurnSettings
    from lakehouse.common import promotion
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake
    from lakehouse.common.registry import CHALLENGER, Registry

    settings = ChurnSettings()
    steps = {"raw_and_staging_s": materialize(_keys(RAW + STAGING))}
    first = date(2024, 8, 5) if slice_ else date(2023, 4, 3)
    last = date(2024, 9, 2) if slice_ else date(2024, 12, 30)
    steps["features_backfill_s"] = materialize(
        "churn/churn_features", partition_range=(first.isoformat(), last.isoformat())
    )
    paths = LakehouseHome(home)
    store = ChurnStore(Lake(str(paths.lake)), paths.warehouse)
    weeks = store.query("select count(distinct snapshot_date) as weeks, count(*) as rows from churn_features").row(
        0, named=True
    )
    result = {
        "settings": {
            "calendar": settings.calendar.model_dump(mode="json"),
            "evaluation": settings.evaluation.model_dump(mode="json"),
        },
        "features": weeks,
        "steps_s": steps,
    }
    if slice_:
        return result

    runs = tick("churn_monthly_training_schedule", TRAINING_TICK)
    registry = Registry(paths.mlflow_uri, paths.mlflow_artifacts)
    name = settings.registered_model_name
    version = registry.alias_version(name, CHALLENGER)
    verdict, summary = promotion.recorded_verdict(registry, name, version)
    booster, _ = load_model(registry, settings, alias=CHALLENGER)
    ours = registry.version_metrics(name, version)

    kit = pl.read_parquet(KIT / "churn" / "eval_snapshots.parquet").filter(pl.col("split") == "test")
    kit = kit.with_columns(monday=pl.col("snapshot_date") - pl.duration(days=pl.col("snapshot_date").dt.weekday() - 1))
    features = store.query("select * from churn_features")
    joined = kit.join(
        features, left_on=["account_id", "monday"], right_on=["customer_id", "snapshot_date"], how="inner"
    )
    scores = booster.predict(feature_matrix(joined))
    kit_metrics = _metrics(joined["churn_30d"].to_numpy(), scores)
    reference = baseline("churn")
    result.update(
        {
            "schedule_tick": {
                "schedule": "churn_monthly_training_schedule",
                "at": TRAINING_TICK.isoformat(),
                "runs": runs,
            },
            "gate": {"version": version, "verdict": verdict, "summary": summary},
            "challenger_own_test_period": {k: round(ours[k], 4) for k in ("auc_roc", "auc_pr", "recall_top20")},
            "kit_test_split": {
                "rows": kit.height,
                "rows_scored": joined.height,
                "ours": kit_metrics,
                "baseline": {
                    "auc_pr": reference["test_auc_pr"],
                    "roc_auc": reference["test_roc_auc"],
                    "recall_at_top20pct": reference["test_recall_at_top20pct"],
                },
                "random_ranking": reference["random_ranking_reference"],
                "note": "rows of accounts already churned before the snapshot have no features in our definition of an active customer",
            },
        }
    )
    return result


def _metrics(labels, scores) -> dict:
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    top = np.argsort(-scores)[: int(len(scores) * 0.2)]
    return {
        "auc_pr": round(float(average_precision_score(labels, scores)), 4),
        "roc_auc": round(float(roc_auc_score(labels, scores)), 4),
        "recall_at_top20pct": round(float(labels[top].sum() / labels.sum()), 4),
        "positives": int(labels.sum()),
    }
