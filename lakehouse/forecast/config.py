"""Every number of the forecasting case in one place (seed case 2 unless said otherwise)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

CASE = "forecast"

# (stores, SKUs) per named scale. Full is the seed's chain; demo is sized so the case's demo
# runs in about 3 minutes on a 2-core machine (docs/forecast.md, "Demo scale").
SCALES = {"demo": (6, 60), "full": (150, 8_000)}
REGIONS = ("north", "south", "east", "west", "paris")
SEGMENTS = ("stable", "seasonal", "new", "promo")


@dataclass(frozen=True)
class Frequency:
    """What the frequency setting changes: the horizon, the seasonal period and the windows."""

    alias: str  # pandas/statsforecast frequency
    days: int  # length of one period in days
    horizon: int  # D+1..D+14 in periods
    season: int  # weekly cycle in days, yearly cycle in weeks
    eval_step: int  # the step MAPE is measured at (D+7)
    lags: tuple[int, ...]
    rolling: tuple[int, ...]  # rolling means of the previous period's value (global models)
    stat_window: int  # bounded fitting window of the statistical models, in periods
    global_window: int  # training window of the global LightGBM models, in periods


FREQUENCIES = {
    "D": Frequency("D", 1, horizon=14, season=7, eval_step=7, lags=(1, 7, 14), rolling=(7, 28), stat_window=112, global_window=182),
    "W": Frequency("W-MON", 7, horizon=2, season=52, eval_step=1, lags=(1, 2, 52), rolling=(4, 13), stat_window=104, global_window=104),
}


def scale_counts(scale: str) -> tuple[int, int]:
    """`demo`, `full`, or explicit counts `STORESxSKUS` (e.g. `1x8000`)."""
    if scale in SCALES:
        return SCALES[scale]
    stores, _, skus = scale.lower().partition("x")
    if not (stores.isdigit() and skus.isdigit()):
        raise ValueError(f"forecast scale {scale!r}: use demo, full or STORESxSKUS such as 8x300")
    return int(stores), int(skus)


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and dynamics of the synthetic grocery chain."""

    stores: int = SCALES["demo"][0]
    skus: int = SCALES["demo"][1]
    years: float = 3.0
    end_date: date = date(2026, 10, 12)  # first day without sales: history ends the day before
    seed: int = 7
    freq: str = "D"
    tourist_share: float = 0.3
    # Latent product profiles; "new" products launched within the last 6 months.
    profile_shares: dict = field(default_factory=lambda: {"stable": 0.4, "seasonal": 0.3, "promo": 0.15, "new": 0.15})
    promo_uplift_per_discount: float = 6.0  # units x (1 + 6 x discount) while on promotion
    revision_share: float = 0.25  # promotions revised at least once after publication

    @classmethod
    def from_env(cls) -> WorldConfig:
        # LAKEHOUSE_SCALE is shared by every case (demo | full); the case's own variable also takes counts.
        shared = os.environ.get("LAKEHOUSE_SCALE", "demo")
        stores, skus = scale_counts(os.environ.get("LAKEHOUSE_FORECAST_SCALE") or (shared if shared in SCALES else "demo"))
        return cls(
            stores=stores,
            skus=skus,
            seed=int(os.environ.get("LAKEHOUSE_SEED", cls.seed)),
            freq=os.environ.get("LAKEHOUSE_FORECAST_FREQ", cls.freq),
        )

    def with_(self, **changes) -> WorldConfig:
        return replace(self, **changes)

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=round(self.years * 365))

    @property
    def last_day(self) -> date:
        return self.end_date - timedelta(days=1)

    @property
    def frequency(self) -> Frequency:
        return FREQUENCIES[self.freq]


def store_key(region: str, number: int) -> str:
    """Partition keys that read well: `<region>-s<number>`."""
    return f"{region}-s{number:03d}"


def store_keys(world: WorldConfig) -> list[str]:
    return [store_key(REGIONS[i % len(REGIONS)], i + 1) for i in range(world.stores)]


@dataclass(frozen=True)
class SegmentRules:
    """Segmentation of each store x SKU series (documented in docs/forecast.md)."""

    new_max_history_days: int = 182  # history < 6 months -> new
    promo_min_share: float = 0.12  # share of selling days under promotion -> promo
    promo_min_uplift: float = 1.5  # and promo days sell at least 1.5x the others
    seasonal_min_strength: float = 0.35  # STL-style strength of the weekly + yearly pattern -> seasonal
    stable_max_cv: float = 0.45  # remaining series with a coefficient of variation below this -> stable
    # Tourist stores: summer (Jul-Aug) sales at least this ratio of spring (Apr-May).
    tourist_min_summer_ratio: float = 1.35


@dataclass(frozen=True)
class ForecastSettings:
    # Seed targets, MAPE at D+7 on days with sales > 0.
    mape_targets: dict = field(default_factory=lambda: {"stable": 0.12, "seasonal": 0.18, "new": 0.25, "promo": 0.30})
    manual_mape: float = 0.28  # seed: manual forecasters before ML
    seed_model_mape: float = 0.14
    drift_margin: float = 0.05  # WARN when a segment's matured D+7 MAPE exceeds target + margin
    drift_error_margin: float = 0.10  # ERROR beyond target + this
    # Statistical models
    arima: dict = field(default_factory=lambda: {"max_p": 2, "max_q": 2, "max_P": 1, "max_Q": 1, "approximation": True})
    # One process per fit: parallelism comes from store partitions (multiprocess executor, k8s)
    # or the Dask engine. A forked worker pool inside a threaded orchestrator process can deadlock.
    stat_n_jobs: int = 1
    # Global LightGBM models (mlforecast)
    lgbm_params: dict = field(
        default_factory=lambda: {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.9, "n_jobs": 2, "verbosity": -1, "random_state": 7}
    )
    global_max_series: int = 20_000  # series sampled to train the global models
    # New products: the same-family same-store mean weighs 1 on the first day of sales and
    # fades linearly to 0 after this many days, as the product's own lags take over.
    new_family_fade_days: int = 56
    family_mean_days: int = 28
    # Reconciliation checks
    coherence_tolerance: float = 1e-6  # relative
    # Evaluation
    backtest_origins: int = 2  # weekly rolling origins, the last one with every D+14 matured
    backtest_max_series_per_segment: int = 25
    order_safety_factor: float = 0.15  # order-up-to level = forecast x (1 + safety)
    gross_margin: float = 0.28
    investment_eur: float = 380_000.0
    seed_annual_savings_eur: float = 2_300_000.0
    seed_roi: float = 6.0
    seed_overstock: tuple[float, float] = (0.12, 0.07)
    seed_stockout: tuple[float, float] = (0.06, 0.035)
    # Monitoring
    volume_min_share: float = 0.98  # of the store's active series forecast each night
    experiment: str = "forecast"
    promo_model_name: str = "forecast_promo_lightgbm"
    new_model_name: str = "forecast_new_lightgbm"
    engine: str = "local"  # local | dask
    dask_scheduler: str | None = None

    @classmethod
    def from_env(cls) -> ForecastSettings:
        return cls(
            engine=os.environ.get("LAKEHOUSE_FORECAST_ENGINE", cls.engine),
            dask_scheduler=os.environ.get("LAKEHOUSE_FORECAST_DASK_SCHEDULER") or None,
        )

    def with_(self, **changes) -> ForecastSettings:
        return replace(self, **changes)


SETTINGS = ForecastSettings()
RULES = SegmentRules()
