"""Layer-1 rules, the cascade (LightGBM -> XGBoost) with its out-of-time evaluation, the
promotion gate and the champion alias."""

from datetime import UTC, datetime

import dagster as dg

from assets.common import OWNERS, champion_asset, gate_check_result
from assets.fraud.reports import evaluation_metadata
from lakehouse.fraud.online import LISTS_KEY_PREFIX
from lakehouse.fraud.pipeline import learn_rules, promotion_gate, publish_rules, train_cascade
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, MlflowResource, RedisResource

FEATURES = dg.AssetKey([CASE, "transaction_features"])
RULE_LISTS = dg.AssetKey([CASE, "rule_lists"])
MODEL = dg.AssetKey([CASE, "cascade_model"])
GATE = FraudSettings().gate


@dg.asset(
    key=RULE_LISTS,
    deps=[FEATURES],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Layer-1 rules learnt from the labelled training window only: payee IBANs that received fraud (mules), "
        "suspicious IPs, blacklisted countries (plus the configured static list), and the risky-merchant rule "
        "(threshold on the merchant's known fraud rate and its weight, measured on the training days)."
    ),
)
def rule_lists(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    lists, split = learn_rules(lakehouse.lake, FraudSettings())
    return dg.MaterializeResult(
        metadata={
            "learnt_from": f"{split.train.start} .. {split.train.end}",
            **lists.summary(),
            "countries_listed": ", ".join(sorted(lists.countries)) or "none",
        }
    )


@dg.asset(
    key=[CASE, "rule_lists_online"],
    deps=[RULE_LISTS],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    description=f"The layer-1 rules published to Redis (sets and a hash under `{LISTS_KEY_PREFIX}`, and a version the service polls).",
)
def rule_lists_online(lakehouse: LakehouseResource, redis: RedisResource) -> dg.MaterializeResult:
    client = redis.client()
    try:
        version = publish_rules(lakehouse.lake, client)
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
            description=f"Test window: recall >= {GATE.min_recall}, precision >= {GATE.min_precision}, and better than the rules-only baseline on both.",
        )
    ],
    description=(
        "Rules -> LightGBM (layer 2, light features) -> XGBoost (layer 3, every feature, for the ambiguous share of "
        "traffic) trained on the training window, band and thresholds chosen on the validation window, evaluated on "
        "the test window beside the rules-only baseline and layer 2 alone; logged to MLflow, registered as `challenger`."
    ),
)
def cascade_model(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource):
    settings = FraudSettings()
    registry = mlflow.registry(lakehouse)
    training = train_cascade(lakehouse.lake, registry, settings, run_name=f"fraud-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    m = training.evaluation.metrics()
    context.log.info(
        f"fraud cascade v{training.version}: recall {m['recall']:.3f} precision {m['precision']:.3f} AP {m['average_precision']:.4f}"
    )
    cascade = training.cascade
    yield dg.MaterializeResult(
        metadata={
            "model_version": training.version,
            "mlflow_run_id": training.run_id,
            "split": training.split.describe(),
            "layer2_features": len(cascade.layer2_features),
            "layer3_features": len(cascade.layer3_features),
            "layer3_band": f"[{cascade.band[0]:.3g}, {cascade.band[1]:.3g}] (layer-2 score)",
            "review_threshold": round(cascade.review_threshold, 4),
            "block_threshold": round(cascade.block_threshold, 4),
            **evaluation_metadata(training.evaluation, settings),
        }
    )
    yield gate_check_result(registry, promotion_gate(training, registry, settings), MODEL)


champion_model = champion_asset(
    CASE,
    MODEL,
    lambda settings: settings.cascade.registered_model_name,
    FraudSettings,
    description="Moves the MLflow alias `champion` to the challenger that passed the promotion gate; the service hot-reloads it.",
)
