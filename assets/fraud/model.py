"""Layer-1 rules, the cascade (LightGBM -> XGBoost) with its out-of-time evaluation, the promotion gate,
the champion alias and the champion's rules published to the online store."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from assets.common import OWNERS, champion_asset, gate_check_result, table
from assets.fraud.reports import evaluation_line, evaluation_metadata
from lakehouse.fraud.online import LISTS_KEY_PREFIX
from lakehouse.fraud.pipeline import learn_rules, promotion_gate, publish_champion_rules, train_cascade
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, MlflowResource, RedisResource, SourcesResource

FEATURES = dg.AssetKey([CASE, "transaction_features"])
RULE_LISTS = dg.AssetKey([CASE, "rule_lists"])
MODEL = dg.AssetKey([CASE, "model"])
CHAMPION = dg.AssetKey([CASE, "champion_model"])


@dg.asset(
    key=RULE_LISTS,
    deps=[FEATURES],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Layer-1 rules learnt from the labelled training window only: payee IBANs that received fraud (mules), "
        "suspicious IPs, blacklisted countries (plus the configured static list), and the risky-merchant rule "
        "(threshold on the merchant's known fraud rate and its weight, measured on the training days). Each trained "
        "model keeps the lists it was trained with."
    ),
)
def rule_lists(lakehouse: LakehouseResource, sources: SourcesResource) -> dg.MaterializeResult:
    lists, split = learn_rules(lakehouse.lake, sources.settings(FraudSettings))
    return dg.MaterializeResult(
        metadata={
            "learnt_from": f"{split.train.start} .. {split.train.end}",
            **lists.summary(),
            "countries_listed": ", ".join(sorted(lists.countries)) or "none",
        }
    )


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
                "On the test window: the floors `gate.min_recall` and `gate.min_precision`; not worse beyond noise "
                "than the champion (average precision on the test payments after both models' training cut-offs) "
                "nor than the rules only (recall, precision), with bootstrap intervals over customers and the "
                "support `gate.comparison.min_support`. A refusal is a WARN outcome: the champion stays."
            ),
        )
    ],
    description=(
        "Rules -> LightGBM (layer 2, light features) -> XGBoost (layer 3, every feature) trained on the training "
        "window; on the validation window (given, or carved from the end of training) the early stopping, each "
        "layer's calibration, the layer-3 band within `cascade.layer3_max_share` and the thresholds; then both "
        "layers refitted on training + validation; evaluated on the test window beside the rules-only baseline "
        "and each layer alone; logged to MLflow and registered as `challenger` with its cut-off `trained_until`."
    ),
)
def model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    settings = sources.settings(FraudSettings)
    registry = mlflow.registry(lakehouse)
    training = train_cascade(lakehouse.lake, registry, settings, run_name=f"fraud-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    cascade, search = training.cascade, training.cascade.band_search
    context.log.info(f"fraud cascade v{training.version} on the test window: {evaluation_line(training.evaluation)}")
    context.log.info(
        f"layer-3 band from the layer-2 score {cascade.band[0]:.3g} ({search.get('chosen_share', 0):.0%} of the "
        f"validation traffic; {search.get('validation_frauds_below_band', 0)} of "
        f"{search.get('validation_frauds', 0)} validation frauds below it)"
    )
    yield dg.MaterializeResult(
        metadata={
            "model_version": training.version,
            "mlflow_run_id": training.run_id,
            "split": training.split.describe(),
            "trained_until": training.split.trained_until.isoformat(),
            "layer2_features": len(cascade.layer2_features),
            "layer3_features": len(cascade.layer3_features),
            "layer3_band": f"[{cascade.band[0]:.3g}, {cascade.band[1]:.3g}] (calibrated layer-2 score)",
            "layer3_validation_share": search.get("validation_traffic_share", float("nan")),
            "validation_frauds_below_band": search.get("validation_frauds_below_band", 0),
            "band_search": table(pl.DataFrame(search.get("candidates", []))),
            "calibration": str(cascade.calibration),
            "review_threshold": round(cascade.review_threshold, 4),
            "block_threshold": round(cascade.block_threshold, 4),
            **evaluation_metadata(training.evaluation, settings),
        }
    )
    verdict = promotion_gate(training, registry, settings)
    (context.log.info if verdict.passed else context.log.warning)(f"promotion gate: {verdict.summary()}")
    yield gate_check_result(registry, verdict, MODEL)


champion_model = champion_asset(
    CASE,
    MODEL,
    lambda settings: settings.cascade.registered_model_name,
    FraudSettings,
    description=(
        "Moves the MLflow alias `champion` to the challenger whose recorded gate verdict is a pass, or keeps the "
        "champion and says why; run config `rollback_to` + `reason` moves it back to an earlier version that "
        "passed. The service hot-reloads the champion."
    ),
)


@dg.asset(
    key=[CASE, "rule_lists_online"],
    deps=[CHAMPION],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        f"The champion's own layer-1 rules published to Redis (sets and a hash under `{LISTS_KEY_PREFIX}`, and a "
        "version the service polls). With no champion nothing is published: a shadow model's rules never serve."
    ),
)
def rule_lists_online(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    redis: RedisResource,
    sources: SourcesResource,
):
    client = redis.client()
    try:
        published = publish_champion_rules(mlflow.registry(lakehouse), sources.settings(FraudSettings), client)
    finally:
        client.close()
    if published is None:
        context.log.warning("no champion: no rules published (a shadow model's rules never serve)")
        return
    version, champion = published
    yield dg.MaterializeResult(
        metadata={"version": version, "champion_version": champion, "redis_url": redis.url.split("@")[-1]}
    )
