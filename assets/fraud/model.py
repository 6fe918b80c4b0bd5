"""Layer-1 lists, the cascade (LightGBM -> XGBoost) with its out-of-time evaluation, the
promotion gate and the champion alias."""


from datetime import datetime, timezone

import dagster as dg
import polars as pl

from assets.common import OWNERS, champion_asset, markdown_table
from lakehouse.fraud.config import CASE, LISTS_KEY_PREFIX, SEED_REFERENCE, SETTINGS
from lakehouse.fraud.model import DaySplit, evaluate_test, log_cascade, passes_gate, train
from lakehouse.fraud.online import publish_lists
from lakehouse.fraud.rules import RuleLists, batch_rules, build_lists
from lakehouse.fraud.tables import partition_days, read_days
from resources import LakehouseResource, MlflowResource, RedisResource

TRANSACTIONS = dg.AssetKey([CASE, "transactions"])
FEATURES = dg.AssetKey([CASE, "transaction_features"])
RULE_LISTS = dg.AssetKey([CASE, "rule_lists"])
MODEL = dg.AssetKey([CASE, "cascade_model"])


@dg.asset(
    key=RULE_LISTS,
    deps=[TRANSACTIONS],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Layer-1 lists learnt from the labelled training days only: payee IBANs that received fraud (mules), "
        "suspicious IPs, blacklisted countries (plus the configured static list)."
    ),
)
def rule_lists(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    split = DaySplit.from_days(partition_days(lakehouse.lake, "transactions"), SETTINGS)
    lists = build_lists(read_days(lakehouse.lake, "transactions", list(split.train)), SETTINGS)
    frame = lists.as_frame()
    lakehouse.lake.write(frame, CASE, "rule_lists")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "learnt_from": ", ".join(split.train),
            **{f"{name}": len(getattr(lists, name)) for name in ("ibans", "ips", "countries")},
            "countries_listed": ", ".join(sorted(lists.countries)) or "none",
        }
    )


@dg.asset(
    key=[CASE, "rule_lists_online"],
    deps=[RULE_LISTS],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    description=f"The layer-1 lists published to Redis (sets `{LISTS_KEY_PREFIX}<list>` and a version the service polls).",
)
def rule_lists_online(lakehouse: LakehouseResource, redis: RedisResource) -> dg.MaterializeResult:
    lists = RuleLists.from_frame(lakehouse.lake.read(CASE, "rule_lists"))
    client = redis.client()
    try:
        version = publish_lists(client, lists)
    finally:
        client.close()
    return dg.MaterializeResult(metadata={"version": version, "redis_url": redis.url.split("@")[-1]})


@dg.asset(
    key=MODEL,
    deps=[FEATURES, RULE_LISTS],
    group_name=CASE,
    kinds={"lightgbm", "xgboost", "mlflow"},
    owners=OWNERS[CASE],
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset=MODEL,
            blocking=True,
            description=(
                f"Out-of-time test days: recall >= {SETTINGS.gate_min_recall}, precision >= {SETTINGS.gate_min_precision}, "
                "and better than the rules-only baseline on both."
            ),
        )
    ],
    description=(
        "Rules -> LightGBM (layer 2, ~50 features) -> XGBoost (layer 3, every feature, only for layer-2 scores in the band) "
        "trained on the earliest days, thresholds chosen on the validation days, evaluated on the last days beside the "
        "rules-only baseline; logged to MLflow and registered with alias `challenger`."
    ),
)
def cascade_model(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource):
    features = read_days(lakehouse.lake, "transaction_features")
    raw = read_days(lakehouse.lake, "transactions")
    lists = RuleLists.from_frame(lakehouse.lake.read(CASE, "rule_lists"))
    data = features.join(batch_rules(features, raw, lists, SETTINGS), on="tx_id")
    split = DaySplit.from_days(data["ts"].dt.date().cast(pl.String).unique().to_list(), SETTINGS)
    cascade = train(data, split, SETTINGS)
    evaluation = evaluate_test(cascade, data, split, SETTINGS)
    registry = mlflow.registry(lakehouse)
    version, run_id = log_cascade(registry, cascade, evaluation, split, SETTINGS, run_name=f"fraud-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    # Reference for drift monitoring: layer-2 inputs on the test days, as the live log records them.
    reference = split.frame(data, "test").select("tx_id", *cascade.layer2_features)
    lakehouse.lake.write(reference.with_columns(model_version=pl.lit(version)), CASE, "reference_features")
    m, b = evaluation.cascade, evaluation.baseline
    metrics = {**m, **{f"baseline_{k}": v for k, v in b.items()}}
    comparison = pl.DataFrame(
        {
            "metric": ["recall", "precision", "false-positive share", "fraud EUR caught / month", "layer-1 block share", "layer-1 precision", "layer-3 share"],
            "rules only": [b["recall"], b["precision"], b["fp_share"], b["fraud_eur_caught_per_month"], None, None, None],
            "cascade": [m["recall"], m["precision"], m["fp_share"], m["fraud_eur_caught_per_month"], m["layer1_block_share"], m["layer1_precision"], m["layer3_share"]],
            "seed before": [0.70, 0.12, 0.88, SEED_REFERENCE["fraud_caught_eur_month_before"], None, None, None],
            "seed after": [0.87, 0.58, 0.42, SEED_REFERENCE["fraud_caught_eur_month_after"], 0.15, 0.95, 0.35],
        }
    )
    context.log.info(f"fraud cascade v{version}: recall {m['recall']:.3f} precision {m['precision']:.3f} (rules only {b['recall']:.3f} / {b['precision']:.3f})")
    passed = passes_gate(metrics, SETTINGS)
    registry.record_gate(SETTINGS.registered_model_name, version, passed, ("GO" if passed else "NO-GO") + f": challenger v{version}")
    yield dg.MaterializeResult(
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "split": f"train {split.train[0]}..{split.train[-1]}, valid {split.valid[0]}..{split.valid[-1]}, test {split.test[0]}..{split.test[-1]}",
            "layer2_features": len(cascade.layer2_features),
            "layer3_features": len(cascade.layer3_features),
            "review_threshold": cascade.review_threshold,
            "block_threshold": cascade.block_threshold,
            **{k: float(v) for k, v in metrics.items()},
            "metrics": dg.MetadataValue.md(markdown_table(comparison.with_columns(pl.all().exclude("metric").cast(pl.Float64)), "{:,.3f}")),
            "recall_by_pattern": dg.MetadataValue.md(markdown_table(evaluation.by_pattern, "{:.3f}")) if not evaluation.by_pattern.is_empty() else "n/a",
        }
    )
    yield dg.AssetCheckResult(
        check_name="promotion_gate",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("GO" if passed else "NO-GO") + f": challenger v{version}",
        metadata={
            "model_version": version,
            "value": float(m["recall"]),
            "threshold": f"recall >= {SETTINGS.gate_min_recall}; precision >= {SETTINGS.gate_min_precision}; beats rules only",
            "recall": float(m["recall"]),
            "precision": float(m["precision"]),
            "baseline_recall": float(b["recall"]),
            "baseline_precision": float(b["precision"]),
        },
    )


champion_model = champion_asset(
    CASE,
    MODEL,
    SETTINGS.registered_model_name,
    description="Moves the MLflow alias `champion` to the challenger that passed the promotion gate; the service hot-reloads it.",
)