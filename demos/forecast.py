"""Forecast demo on the synthetic chain: master tables and sales, the weekly refit (model selection,
MLflow challenger, backtest, gate, promotion, planning, financial report), two nightly runs (an
origin whose D+7 has matured, and tonight), reconciliation, Redis publication and monitoring."""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from demos import latest_metadata


def _redis_or_private(resources: dict, log):
    """The configured Redis if it answers, else a private redis-server for the demo's run. The resource is
    resolved first: its URL may come from an environment variable (LAKEHOUSE_REDIS_URL, an `EnvVar`)."""
    from redis.exceptions import RedisError

    from lakehouse.common.local_servers import RedisServer
    from resources import RedisResource

    configured = resources["redis"].process_config_and_initialize()
    try:
        client = configured.client()
        try:
            client.ping()
        finally:
            client.close()
        return resources, None
    except (RedisError, OSError, ValueError):
        server = RedisServer().start()
        log(
            f"forecast: no Redis at {configured.url}; publishing to a private redis-server at {server.url} "
            "for this demo"
        )
        return {**resources, "redis": RedisResource(url=server.url)}, server


def definitions(resources: dict | None = None) -> dg.Definitions:
    """The forecasting case's part of the code location (its assets, checks, jobs, schedules and
    sensors), on the default resources: what the benchmark and the tests run, whatever the other
    cases hold."""
    import sensors.forecast
    from assets.forecast import ASSETS, CHECKS
    from resources import default_resources

    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=sensors.forecast.JOBS,
        schedules=sensors.forecast.SCHEDULES,
        sensors=sensors.forecast.SENSORS,
        resources=resources or default_resources(),
    )


def run(instance: dg.DagsterInstance, resources: dict, log=print) -> dict:
    """The forecast graph in the order its schedules run it."""
    from assets.forecast import ASSETS, CHECKS
    from assets.forecast.forecasts import OriginConfig
    from assets.forecast.partitions import every_store, store_range_tags
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.forecast.settings import ForecastSettings
    from lakehouse.forecast.world import WorldConfig

    world = WorldConfig.from_env()
    settings = ForecastSettings.load(configured_sources_path())
    past_origin = world.last_day - timedelta(days=settings.eval_step)
    resources, server = _redis_or_private(resources, log)

    def materialize(selection, **kwargs):
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            **kwargs,
        )

    def nightly(origin):
        config = dg.RunConfig({"forecast__store_forecasts": OriginConfig(origin=origin.isoformat())})
        return materialize(
            "key:forecast/store_forecasts", tags=store_range_tags(every_store(instance)), run_config=config
        )

    try:
        log(
            f"forecast 1/5 master tables (registering the store partitions) and sales of {world.stores} stores x "
            f"{world.skus} SKUs"
        )
        materialize(
            "key:forecast/stores or key:forecast/products or key:forecast/promotions or key:forecast/events or "
            "key:forecast/covariates"
        )
        sales = materialize("key:forecast/sales", tags=store_range_tags(every_store(instance)))
        log(
            "forecast 2/5 weekly refit: segments, model selection on validation, fits, MLflow challenger; "
            "backtest and gate; champion"
        )
        refit = materialize("key:forecast/model or key:forecast/backtest or key:forecast/champion_model")
        log(f"forecast 3/5 nightly forecasts from the champion: origin {past_origin} (matured) and {world.last_day}")
        nightly(past_origin)
        tonight = nightly(world.last_day)
        log("forecast 4/5 reconciliation, Redis publication, accuracy monitoring")
        publish = materialize(
            "key:forecast/operational_forecast or key:forecast/published_forecast or key:forecast/live_accuracy"
        )
        log("forecast 5/5 planning horizon (top-down) and financial report")
        planning = materialize("key:forecast/planning_forecast or key:forecast/financial_impact")
    finally:
        if server is not None:
            server.stop()
    steps = {"sales": sales, "refit": refit, "nightly": tonight, "publish": publish, "planning": planning}
    return {
        "success": {k: r.success for k, r in steps.items()},
        "origin": world.last_day,
        "past_origin": past_origin,
        "private_redis": server is not None,
    }


def report(instance: dg.DagsterInstance, home: Path, outcome: dict) -> bool:
    """Print the forecasting results beside the seed's; True when every step succeeded."""
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.forecast.settings import SEGMENTS, ForecastSettings
    from lakehouse.forecast.world import WorldConfig

    world = WorldConfig.from_env()
    settings = ForecastSettings.load(configured_sources_path())
    key = settings.cadence.step_key(settings.eval_step)
    label = settings.cadence.step_label(settings.eval_step)
    print(f"\n=== Forecast (seed case 2): {world.stores} stores x {world.skus} SKUs, seed {world.seed} ===")
    model = latest_metadata(instance, ["forecast", "model"])
    if model:
        print(
            "segments: "
            + ", ".join(f"{s} {model.get(f'series_{s}', 0)}" for s in SEGMENTS)
            + f"; challenger v{model['model_version']} as of {model['as_of']}"
        )
    backtest = latest_metadata(instance, ["forecast", "backtest"])
    if backtest:
        per = "  ".join(
            f"{s} {backtest[f'mape_{key}_{s}']} (< {100 * t:.0f} %)"
            for s, t in settings.targets.mape.items()
            if f"mape_{key}_{s}" in backtest
        )
        print(f"backtest {backtest['window']}, {backtest['series']}: MAPE {label} {per}")
        print(
            f"  all: WAPE {backtest[f'wape_{key}']} vs seasonal naive {backtest[f'seasonal_naive_wape_{key}']} "
            "(seed: MAPE manual 28 % -> ML 14 %)"
        )
        print(f"gate: {backtest['verdict']}")
    night = latest_metadata(instance, ["forecast", "store_forecasts"])
    if night.get("shadow"):
        print(f"nightly forecasts in shadow: {night['serving']} (evaluated, not published)")
    published = latest_metadata(instance, ["forecast", "published_forecast"])
    if published:
        print(
            f"published to Redis: {published['dagster/row_count']:,} store x SKU vectors, origin {published['origin']}"
            + (" (private redis-server, stopped after the demo)" if outcome.get("private_redis") else "")
        )
    planning = latest_metadata(instance, ["forecast", "planning_forecast"])
    if planning:
        print(
            f"planning forecast: {planning['periods']} periods {planning['first_period']} .. "
            f"{planning['last_period']}, reconciled {planning['method'].replace('_', '-')}"
        )
    impact = latest_metadata(instance, ["forecast", "financial_impact"])
    if impact:
        print(
            f"orders: overstock {impact['overstock_seasonal_naive']} -> {impact['overstock_models']}, stockouts "
            f"{impact['stockouts_seasonal_naive']} -> {impact['stockouts_models']} of demand value (seed 12 -> 7 "
            "%, 6 -> 3.5 %)"
        )
        print(
            f"financial impact: {impact['annual_savings']} a year, ROI {impact['roi_year1']:.1f}x (seed 2.3 M EUR, 6x)"
        )
        print(f"  {impact['economics']}")
    ok = all(outcome["success"].values())
    if not ok:
        print("failed steps: " + ", ".join(k for k, v in outcome["success"].items() if not v))
    return bool(ok and (published or night.get("shadow")) and backtest and impact)
