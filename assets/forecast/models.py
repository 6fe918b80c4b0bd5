"""Weekly refit: segmentation, statistical models per store, global LightGBM models, MLflow."""

from datetime import date, datetime, timezone

import dagster as dg
import polars as pl

from assets.common import OWNERS, markdown_table
from assets.forecast.io import master_tables, model_path, save_pickle, store_data
from assets.forecast.partitions import store_partitions
from lakehouse.forecast.config import CASE, RULES, SEGMENTS, ForecastSettings, WorldConfig
from lakehouse.forecast.features import history
from lakehouse.forecast.models import STAT_MODEL_NAMES, fit_global_models, fit_stat_models, stat_windows, training_frame
from lakehouse.forecast.segmentation import segment_store, store_profile
from resources import LakehouseResource, MlflowResource

SALES_KEY = dg.AssetKey([CASE, "sales"])
SEGMENTS_KEY = dg.AssetKey([CASE, "segments"])
STAT_MODELS_KEY = dg.AssetKey([CASE, "stat_models"])
GLOBAL_MODELS_KEY = dg.AssetKey([CASE, "global_models"])


class RefitConfig(dg.Config):
    as_of: str | None = None  # last day of history the refit may use; default: the store's last sales day


def _as_of(config: RefitConfig, sales: pl.DataFrame) -> date:
    return date.fromisoformat(config.as_of) if config.as_of else sales["date"].max()


SEGMENT_COLUMNS = {
    "store_id": "Store.", "sku_id": "SKU.", "segment": "stable | seasonal | new | promo (rules in docs/forecast.md).",
    "history_days": "Days since the first sale.", "cv": "Coefficient of variation of daily units (last year, non-promotion days).",
    "seasonality_strength": "Share of variance explained by weekday and month means.", "promo_share": "Share of last year's days under promotion.",
    "promo_uplift": "Promotion-day sales over other days.", "first_sale": "First day with sales.", "as_of": "Cut-off of the segmentation.",
}


@dg.asset(
    key=SEGMENTS_KEY,
    deps=[SALES_KEY],
    partitions_def=store_partitions,
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description="Segment of every store x SKU series (history length, variability, seasonality strength, promotion share) and the store's measured profile (tourist vs residential).",
    metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(n, description=d) for n, d in SEGMENT_COLUMNS.items()])},
)
def forecast_segments(context: dg.AssetExecutionContext, config: RefitConfig, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    tables = master_tables(lakehouse)
    counts: dict[str, int] = {}
    profiles = []
    for store_id in context.partition_keys:
        data = store_data(lakehouse, store_id, tables)
        as_of = _as_of(config, data.sales)
        segments = segment_store(data, as_of, RULES)
        lakehouse.lake.write(segments, CASE, "segments", ("store", store_id))
        profiles.append(store_profile(data, as_of, RULES))
        for segment, n in segments.group_by("segment").len().iter_rows():
            counts[segment] = counts.get(segment, 0) + n
    return dg.MaterializeResult(
        metadata={
            **{f"series_{s}": counts.get(s, 0) for s in SEGMENTS},
            "store_profiles": dg.MetadataValue.md(markdown_table(pl.DataFrame(profiles), "{:.2f}")),
        }
    )


@dg.asset(
    key=STAT_MODELS_KEY,
    deps=[SEGMENTS_KEY],
    partitions_def=store_partitions,
    group_name=CASE,
    kinds={"statsforecast"},
    owners=OWNERS[CASE],
    description="Weekly fit per store: AutoARIMA (stable series) and MSTL (seasonal series) on a bounded window; the fitted state the nightly forecast starts from.",
)
def forecast_stat_models(context: dg.AssetExecutionContext, config: RefitConfig, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    settings = ForecastSettings.from_env()
    freq = WorldConfig.from_env().frequency
    fitted_total = 0
    for store_id in context.partition_keys:
        data = store_data(lakehouse, store_id)
        as_of = _as_of(config, data.sales)
        segments = lakehouse.lake.read(CASE, "segments", ("store", store_id))
        windows = stat_windows(history(data.until(as_of), freq), segments, freq)
        fitted = fit_stat_models(windows, freq, settings)
        save_pickle({"as_of": as_of, "models": fitted}, model_path(lakehouse, "stat_models", store_id))
        fitted_total += len(fitted)
        context.log.info(f"{store_id}: {len(fitted)} statistical models fitted as of {as_of} ({settings.engine})")
    return dg.MaterializeResult(metadata={"fitted_series": fitted_total, "engine": settings.engine, "window_periods": freq.stat_window, "models": str(STAT_MODEL_NAMES)})


@dg.asset(
    key=GLOBAL_MODELS_KEY,
    deps=[SEGMENTS_KEY, STAT_MODELS_KEY],
    group_name=CASE,
    kinds={"lightgbm", "mlforecast", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "Weekly refit of the global LightGBM models (mlforecast): promo (calendar, promotion, weather features) and new "
        "(product attributes). One MLflow run per refit: parameters, segment counts, both models registered, and every "
        "store's fitted statistical models as artifacts."
    ),
)
def forecast_global_models(context: dg.AssetExecutionContext, config: RefitConfig, lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    import mlflow as mlflow_api

    settings = ForecastSettings.from_env()
    freq = WorldConfig.from_env().frequency
    tables = master_tables(lakehouse)
    frames, segments_all = [], []
    as_of = None
    for store_id in store_partitions.get_partition_keys():
        data = store_data(lakehouse, store_id, tables)
        store_as_of = _as_of(config, data.sales)
        as_of = max(as_of, store_as_of) if as_of else store_as_of
        segments = lakehouse.lake.read(CASE, "segments", ("store", store_id))
        segments_all.append(segments)
        frames.append(training_frame(data, store_as_of, freq, settings, segments))
    models = fit_global_models([f for f in frames if f.height], as_of, freq, settings)
    save_pickle(models, model_path(lakehouse, "global_models"))
    counts = pl.concat(segments_all).group_by("segment").len()

    registry = mlflow.registry(lakehouse)
    versions = {}
    with registry.run(settings.experiment, run_name=f"forecast-refit-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}", tags={"as_of": str(as_of)}) as run:
        mlflow_api.log_params({"as_of": str(as_of), "freq": freq.alias, "stat_window": freq.stat_window, "global_window": freq.global_window,
                               "stable_model": "AutoARIMA", "seasonal_model": "MSTL", "engine": settings.engine,
                               **{f"lgbm_{k}": v for k, v in settings.lgbm_params.items()}, **{f"arima_{k}": v for k, v in settings.arima.items()}})
        mlflow_api.log_metrics({f"series_{s}": float(n) for s, n in counts.iter_rows()} | {f"train_rows_{k}": float(v) for k, v in models.train_rows.items()})
        mlflow_api.log_artifacts(str(model_path(lakehouse, "stat_models").parent), artifact_path="stat_models")
        for name, model in ((settings.promo_model_name, models.promo), (settings.new_model_name, models.new)):
            info = mlflow_api.lightgbm.log_model(model.models_["lgbm"], name=name, registered_model_name=name)
            versions[name] = str(info.registered_model_version)
        run_id = run.info.run_id
    context.log.info(f"global models as of {as_of}: {versions}")
    return dg.MaterializeResult(
        metadata={
            "as_of": str(as_of),
            "mlflow_run_id": run_id,
            "registered_versions": dg.MetadataValue.json(versions),
            "train_rows": dg.MetadataValue.json(models.train_rows),
            "features": ", ".join(models.dynamic_columns),
            "segments": dg.MetadataValue.md(markdown_table(counts.sort("segment"))),
        }
    )


