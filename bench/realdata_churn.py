"""The churn case on the kit's RavenStack tables (realdata/churn.yaml): the documented path, then the
model's figures on the kit's own evaluation rows beside the kit's LightGBM baseline.

The user's steps: load the raw tables and the dbt staging, backfill the weekly features over
the whole history in one run, train (the monthly training job, here as its schedule would
tick on the first Monday of December 2024), then let the Monday jobs run: scores of the kit's test
weeks (one backfill run, then the scoring schedule's tick of the last Monday), the CRM push tick, the
monitoring and the evaluation report. The kit's data carries no out-of-time signal (its README), so
the seed's Go/No-Go gate is expected to refuse the model: a green training run, no champion, and the
refused challenger scoring in shadow (never pushed to the CRM) with its reports. The kit figures are
those of that challenger, scored at each kit snapshot from the features of the Monday on or before it
(facts strictly before that Monday).
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
SCORED = ("2024-08-05", "2024-12-23")  # the Mondays of the kit's test period, scored in one backfill run
LAST_MONDAY = datetime(2024, 12, 30, 6, 0, tzinfo=UTC)  # the scoring schedule's tick; the CRM push at 14:00


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
    from lakehouse.common.settings import configured_sources_path

    settings = ChurnSettings.load(configured_sources_path())
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

    training_runs = tick("churn_monthly_training_schedule", TRAINING_TICK)
    registry = Registry(paths.mlflow_uri, paths.mlflow_artifacts)
    name = settings.registered_model_name
    version = registry.alias_version(name, CHALLENGER)
    verdict, summary = promotion.recorded_verdict(registry, name, version)
    booster, _ = load_model(registry, settings, alias=CHALLENGER)
    ours = registry.version_metrics(name, version)

    steps["scores_backfill_s"] = materialize("churn/churn_scores", partition_range=SCORED)
    scoring_runs = tick("churn_weekly_scoring_schedule", LAST_MONDAY)
    push_runs = tick("churn_crm_push_schedule", LAST_MONDAY.replace(hour=14))
    steps["reports_s"] = materialize("churn/live_performance,churn/model_evaluation")
    result["lifecycle"] = _lifecycle(store, registry, name, paths)
    result["runs"] = {"training_tick": training_runs, "scoring_tick": scoring_runs, "crm_push_tick": push_runs}
    result["all_runs_green"] = all(r["success"] for runs in result["runs"].values() for r in runs)

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
            "schedule_tick": {"schedule": "churn_monthly_training_schedule", "at": TRAINING_TICK.isoformat()},
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
                "note": (
                    "rows of accounts already churned before the snapshot have no features in our definition "
                    "of an active customer"
                ),
            },
        }
    )
    return result


def _lifecycle(store, registry, name: str, paths) -> dict:
    """What a user finds after the refusal: no champion, the shadow scores, the CRM outbox, the reports."""
    import dagster as dg
    import duckdb

    from lakehouse.churn.crm import OutboxCrm
    from lakehouse.common.registry import CHAMPION

    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        scores = con.sql(
            f"select model_version, shadow, count(*) as rows, count(distinct snapshot_date) as weeks "
            f"from read_parquet('{store.lake.glob('churn', 'churn_scores', partitioned=True)}', "
            "hive_partitioning = false) group by all"
        ).pl()
    live = store.lake.read("churn", "live_performance") if store.lake.exists("churn", "live_performance") else None
    instance = dg.DagsterInstance.get()
    report = instance.get_latest_materialization_event(dg.AssetKey(["churn", "model_evaluation"]))
    evaluation = {k: v.value for k, v in report.asset_materialization.metadata.items()} if report else {}
    return {
        "champion": registry.alias_version(name, CHAMPION),
        "shadow_scores": scores.to_dicts(),
        "crm_records_pushed": OutboxCrm(paths.ops_db).read().height if paths.ops_db.exists() else 0,
        "live_performance": live.with_columns(pl.col("month").cast(pl.String)).to_dicts() if live is not None else None,
        "evaluation_report": {
            k: evaluation.get(k) for k in ("model_version", "role", "window", "trained_until", "rows", "verdict")
        },
    }


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
