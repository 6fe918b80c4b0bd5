"""The fitted models in the MLflow registry: one version per weekly refit.

A refit logs one MLflow run (parameters, segment counts, the validation scores behind the
routing) with the whole fitted state as artifacts (`forecast_models/`: one file of fitted
statistical models per store, the global LightGBM, segments) and registers a version with the
alias `challenger`; the LightGBM booster is the registered model's flavour. The case's gate
moves `champion`; the nightly path loads `models:/<name>@champion`, downloading only the
stores it forecasts.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl

from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.forecast.models import FittedModels
from lakehouse.forecast.reconcile import DEFAULTS as RECONCILIATION_DEFAULTS
from lakehouse.forecast.settings import LIGHTGBM, ForecastSettings

ARTIFACTS = "forecast_models"
RECONCILIATION_TAG = "reconciliation"  # on a version: each horizon's method, as its backtest chose


def log_models(registry: Registry, fitted: FittedModels, settings: ForecastSettings, run_name: str) -> tuple[str, str]:
    """Log and register the fitted state as the new challenger; (version, run id)."""
    import mlflow

    counts = fitted.segments.group_by("segment").len()
    with registry.run(settings.experiment, run_name, tags={"case": "forecast", "as_of": str(fitted.as_of)}) as run:
        mlflow.log_params(
            {
                "as_of": str(fitted.as_of),
                "frequency": fitted.periods.alias,
                "horizon": settings.horizon,
                "planning_horizon": settings.planning_horizon,
                "routing": ", ".join(f"{s}: {m}" for s, m in fitted.routing.items()),
                "selection": settings.models.selection,
                "lags": str(fitted.periods.cadence.lags),
                "stat_window_periods": settings.stat_window_periods,
                "engine": settings.models.engine,
                "dynamic_features": ", ".join(fitted.dynamic)[:500],
                **{f"lgbm_{k}": v for k, v in settings.models.lightgbm.items()},
            }
        )
        mlflow.log_metrics(
            {f"series_{s}": float(n) for s, n in counts.iter_rows()} | {"train_rows": float(fitted.train_rows)}
        )
        if fitted.selection is not None and not fitted.selection.is_empty():
            mlflow.log_metrics(
                {
                    f"validation_wape_{r['segment']}_{r['model']}".replace("+", "_"): r["wape"]
                    for r in fitted.selection.iter_rows(named=True)
                }
            )
        with tempfile.TemporaryDirectory() as tmp:
            fitted.save(Path(tmp) / ARTIFACTS)
            mlflow.log_artifacts(str(Path(tmp) / ARTIFACTS), ARTIFACTS)
        info = mlflow.lightgbm.log_model(
            fitted.lightgbm.models_[LIGHTGBM],
            name="model",
            registered_model_name=settings.model_name,
            pip_requirements=["lightgbm"],
        )
    version = str(info.registered_model_version)
    registry.set_alias(settings.model_name, CHALLENGER, version)
    return version, run.info.run_id


def load_models(
    registry: Registry,
    settings: ForecastSettings,
    alias: str = CHAMPION,
    stores: list[str] | None = None,
    version: str | None = None,
) -> tuple[FittedModels, str] | None:
    """The fitted state behind `models:/<name>@<alias>`, or of `version` when given (only the given stores'
    statistical models), or None when there is no such version."""
    from mlflow.exceptions import MlflowException

    version = version or registry.alias_version(settings.model_name, alias)
    if version is None:
        return None
    try:
        run_id = registry.client.get_model_version(settings.model_name, version).run_id
    except MlflowException:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ARTIFACTS
        (folder / "stat").mkdir(parents=True)
        for name in ("core.pkl", "segments.parquet"):
            registry.client.download_artifacts(run_id, f"{ARTIFACTS}/{name}", str(folder))
        available = {Path(a.path).stem for a in registry.client.list_artifacts(run_id, f"{ARTIFACTS}/stat")}
        for store in sorted(available if stores is None else available & set(stores)):
            registry.client.download_artifacts(run_id, f"{ARTIFACTS}/stat/{store}.pkl", str(folder / "stat"))
        return FittedModels.load(folder, stores), version


def routing_table(fitted: FittedModels) -> pl.DataFrame:
    return pl.DataFrame({"segment": list(fitted.routing), "model": list(fitted.routing.values())})


def record_reconciliation(registry: Registry, settings: ForecastSettings, version: str, chosen: dict[str, str]) -> None:
    registry.client.set_model_version_tag(settings.model_name, version, RECONCILIATION_TAG, json.dumps(chosen))


def reconciliation_methods(registry: Registry, settings: ForecastSettings, version: str | None) -> dict[str, str]:
    """Each horizon's reconciliation method for `version`: its backtest's choice, else the seed's defaults."""
    from mlflow.exceptions import MlflowException

    if version is None:
        return dict(RECONCILIATION_DEFAULTS)
    try:
        tag = registry.client.get_model_version(settings.model_name, version).tags.get(RECONCILIATION_TAG)
    except MlflowException:
        tag = None
    return {**RECONCILIATION_DEFAULTS, **(json.loads(tag) if tag else {})}
