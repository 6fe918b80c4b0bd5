"""Production settings of the forecasting case (seed case 2): one typed object.

Values come from keyword arguments, `LAKEHOUSE_FORECAST_<FIELD>` environment variables
(nested fields joined by `__`: `LAKEHOUSE_FORECAST_ECONOMICS__CURRENCY=USD`), the `settings:`
section of the case in the sources file, then the defaults below, which are the seed's figures.
Nothing here describes the synthetic chain: its regions, categories and store types live in
`world.py` and reach production only as data in the stores and products tables.

Durations (`14d`, `52w`) are converted to periods of the data's frequency: `14d` is 14 daily
periods or 2 weekly ones; a duration that is not a whole number of periods is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lakehouse.common.freshness import Deadline
from lakehouse.common.plausibility import Plausibility
from lakehouse.common.promotion import ComparisonSettings
from lakehouse.common.settings import Calendar, CaseSettings, Economics, EvaluationWindows, parse_duration
from lakehouse.common.sources import Section

CASE = "forecast"
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
SEGMENTS = ("stable", "seasonal", "new", "promo")
LIGHTGBM = "LightGBM"
SEASONAL_NAIVE = "SeasonalNaive"
# The seed's model of each segment (seed case 2, "Choix d'architecture multi-modèles").
SEED_MODELS = {"stable": "AutoARIMA", "seasonal": "MSTL", "new": "FamilyMean+LightGBM", "promo": LIGHTGBM}


def _duration_days(text: str) -> int:
    count, unit = parse_duration(text)
    if unit not in ("d", "w"):
        raise ValueError(
            f"duration {text!r}: use days or weeks (e.g. 14d, 52w) so that it is a whole number of periods"
        )
    return count * (7 if unit == "w" else 1)


class Hierarchy(Section):
    """The reconciliation tree and the product grouping, named after the user's columns.

    `store_levels` are columns of the stores table from the top down (national -> ... -> store),
    `product_levels` columns of the products table from the top down (-> SKU). Their members are
    whatever the tables hold."""

    national: str = "total"
    store_levels: tuple[str, ...] = ("region",)
    product_levels: tuple[str, ...] = ("category", "family")

    @model_validator(mode="after")
    def _distinct(self) -> Hierarchy:
        names = [*self.store_levels, *self.product_levels]
        reserved = {"store_id", "sku_id", "store_type", "date", "units"}
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError(f"hierarchy levels must be distinct and not one of {sorted(reserved)}: {names}")
        return self


class Segmentation(Section):
    """How each store x SKU series gets its segment (rules applied in this order)."""

    new_max_history: str = "26w"  # first sale less than this ago -> new
    promo_min_share: float = 0.12  # share of last year's periods on promotion -> promo ...
    promo_min_uplift: float = 1.5  # ... and promotion periods sell at least 1.5x the others
    seasonal_min_strength: float = 0.35  # calendar pattern explains this share of the variance -> seasonal
    stable_max_cv: float = 0.45  # or a coefficient of variation above this -> seasonal; else stable


class ModelSettings(Section):
    """Candidate models and their parameters. Lags, rolling windows and date features default by frequency.

    LightGBM runs on one thread by default: on shared cores its OpenMP threads spin against other
    processes (a 50-tree fit took 18x longer with 2 threads than with 1 on a busy 2-core machine);
    raise `n_jobs` on dedicated nodes."""

    lags: tuple[int, ...] | None = None  # D: 7, 14, 21, 28 (D+1..D+7 need no recursion); W: 1, 2, 3, 4, 8, 13, 52
    rolling_windows: tuple[int, ...] | None = None  # rolling means of the first lag; D: 7, 28; W: 4, 13
    date_features: tuple[str, ...] | None = None  # D: dayofweek, month, day; W: month, dayofyear
    lightgbm: dict = Field(
        default_factory=lambda: {
            "objective": "tweedie",
            "n_estimators": 300,
            "learning_rate": 0.05,
            "num_leaves": 63,
            "min_child_samples": 50,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "random_state": 0,
            "n_jobs": 1,
            "verbosity": -1,
        }
    )
    global_history: str | None = None  # training window of the global model (e.g. 2y); None: all history
    global_max_series: int = 20_000  # series sampled to train the global model
    stat_window: str | None = None  # bounded fitting window of the statistical models; D: 16w, W: 104w
    arima: dict = Field(default_factory=lambda: {"max_p": 2, "max_q": 2, "max_P": 1, "max_Q": 1, "approximation": True})
    # AutoARIMA's order search, per series, at most this often (whole weeks); the weekly refits in between keep
    # the series' last orders and re-estimate their parameters on the new window (about 10x cheaper). A rotating
    # 1/k of the series (k = these weeks) is searched each week, so every refit costs the same. None: every fit.
    arima_search_every: str | None = "4w"
    family_fade: str = "8w"  # new products: the reference group's mean fades out over this much own history
    family_mean_window: str = "4w"
    selection: Literal["validation", "seed"] = (
        "validation"  # per segment: chosen on the validation window, or the seed's model
    )
    selection_alpha: float = 0.05  # a specialist replaces the global model only when significantly better (Wilcoxon)
    selection_min_series: int = 30  # ... over at least this many series of its segment (the gate's min_support)
    # dask: the weekly fits (statistical through fugue, LightGBM through mlforecast) and the nightly stores on a
    # Dask cluster, the one at `dask_scheduler` (tcp://host:8786) or, without it, a LocalCluster in the process
    engine: Literal["local", "dask"] = "local"
    dask_scheduler: str | None = None

    @field_validator("arima_search_every")
    @classmethod
    def _whole_weeks(cls, value: str | None) -> str | None:
        if value is not None and (_duration_days(value) % 7 or _duration_days(value) < 7):
            raise ValueError(f"models.arima_search_every {value!r}: use whole weeks (e.g. 4w), or null for every fit")
        return value


class Targets(Section):
    """The seed's accuracy figures: MAPE at the evaluation step on periods with sales."""

    mape: dict[str, float] = Field(
        default_factory=lambda: {"stable": 0.12, "seasonal": 0.18, "new": 0.25, "promo": 0.30}
    )
    manual_mape: float = 0.28  # manual forecasters before ML
    model_mape: float = 0.14  # the seed's models
    drift_margin: float = 0.05  # WARN when a segment's matured MAPE exceeds its reference + this
    drift_error_margin: float = 0.10  # ERROR beyond its reference + this
    # ... each beyond noise only: the one-sided lower bound of the MAPE at 1 - this level (Student's t over the
    # origin's forecasts with sales) must exceed the threshold
    drift_alpha: float = Field(0.01, gt=0.0, lt=0.5)


class Gate(Section):
    """The blocking gate between a weekly challenger and the champion."""

    # The champion's WAPE times this is the tolerance: a challenger worse by less never fails (beyond noise).
    max_wape_increase: float = Field(0.02, ge=0.0)
    beat_seasonal_naive: bool = True  # and one worse than the seasonal naive on the same rows (beyond noise)
    comparison: ComparisonSettings = ComparisonSettings()  # interval level, resamples, series needed to decide


class Attributes(Section):
    """Static columns of the stores and products tables used as features, beyond the hierarchy: each named
    column becomes a required column of its table, a `number` (e.g. a store's floor area) or a `category`
    (e.g. a store format, a brand)."""

    stores: dict[str, Literal["number", "category"]] = Field(default_factory=dict)
    products: dict[str, Literal["number", "category"]] = Field(default_factory=dict)


class Quirks(Section):
    """Documented choices for real-world sales files."""

    negative_units: Literal["refuse", "clip", "keep"] = (
        "refuse"  # returns: refused, set to 0, or kept as negative demand
    )
    fractional_units: Literal["keep", "round", "refuse"] = "keep"  # units sold by weight stay fractional by default
    # A period missing between a series' first and last row: refused (naming series and dates), or a row of 0 units.
    missing_periods: Literal["refuse", "zero"] = "refuse"


class ForecastEconomics(Economics):
    """Unit economics of the financial report (seed figures by default)."""

    gross_margin: float = 0.28
    investment: float = 380_000.0
    annual_revenue: float | None = None  # None: the revenue at which the seed's improvements give its savings
    order_safety_factor: float = 0.15  # order-up-to level = forecast x (1 + safety)
    seed_annual_savings: float = 2_300_000.0
    seed_roi: float = 6.0
    seed_overstock: tuple[float, float] = (0.12, 0.07)  # before, after
    seed_stockout: tuple[float, float] = (0.06, 0.035)

    @property
    def defaults(self) -> bool:
        """True when nobody set any figure: the report then says they are the seed's."""
        return not self.model_fields_set


class Schedules(Section):
    """Cron expressions, in the calendar's time zone."""

    master: str = "45 3 * * *"  # master tables (promotion calendar, covariates, events) before the nightly run
    nightly: str = "0 4 * * *"  # sales + forecasts from the champion's fitted state (seed: 04:00)
    refit: str = "0 1 * * 0"  # weekly refit, backtest, gate


@dataclass(frozen=True)
class Cadence:
    """What the frequency changes: period length, seasonal period, lags and metric names."""

    code: str  # D | W
    days: int
    season: int
    lags: tuple[int, ...]
    rolling_windows: tuple[int, ...]
    date_features: tuple[str, ...]

    def periods(self, duration: str) -> int:
        days = _duration_days(duration)
        if days % self.days:
            raise ValueError(f"duration {duration!r} is not a whole number of {'weeks' if self.days == 7 else 'days'}")
        return days // self.days

    def step_label(self, step: int) -> str:
        """D+7 for daily data, W+1 for weekly data."""
        return f"{self.code}+{step}"

    def step_key(self, step: int) -> str:
        """Metadata key fragment: d7, w1."""
        return f"{self.code.lower()}{step}"

    def shift(self, day: date, periods: int) -> date:
        return day + timedelta(days=periods * self.days)


class ForecastCalendar(Calendar):
    """The case's calendar defaults: setting only `start` (or only `timezone`) keeps the other."""

    start: date = date(2023, 1, 1)
    timezone: str = "Europe/Paris"


class ForecastFreshness(Section):
    published: Deadline = Deadline(at="04:00")  # seed: D+1..D+14 from yesterday's sales, published by 04:00


class ForecastSettings(CaseSettings):
    case: ClassVar[str] = CASE

    calendar: ForecastCalendar = ForecastCalendar()
    plausibility: Plausibility = Plausibility()  # bounds a value must keep (lakehouse.common.plausibility)
    frequency: Literal["D", "W"] = "D"
    week_day: Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"] | None = (
        None  # weekly rows: their weekday (default: the data's, one only)
    )
    week_dates: Literal["end", "start"] = "end"  # a weekly row is dated by the last (or first) day of its week
    horizon: str = "14d"  # the nightly operational horizon (seed: D+1..D+14)
    planning_horizon: str = "52w"  # the planning horizon, same models, up to years
    evaluation_step: str | None = None  # the step accuracy is judged at; default 7d (D+7) daily, 1w (W+1) weekly
    evaluation: EvaluationWindows = EvaluationWindows(test="28d", validation="28d")
    refit_every: str | None = (
        None  # backtest: refit every so often inside a window (7d mimics the weekly refit); None: once per window
    )
    backtest_max_series: int = Field(
        2_000, ge=2_000
    )  # above this many series the backtest runs on a stratified sample of this size
    hierarchy: Hierarchy = Hierarchy()
    segmentation: Segmentation = Segmentation()
    models: ModelSettings = ModelSettings()
    targets: Targets = Targets()
    gate: Gate = Gate()
    attributes: Attributes = Attributes()  # static store and product columns used as features
    quirks: Quirks = Quirks()
    economics: ForecastEconomics = ForecastEconomics()
    observed_covariates: tuple[str, ...] = ()  # covariates known only once their day is over: they enter as lags
    vocabularies: dict[str, tuple[str, ...]] = Field(
        default_factory=dict
    )  # allowed values of stores/products columns; none: any
    volume_min_share: float = 0.98  # of the active series forecast each night
    schedules: Schedules = Schedules()
    freshness: ForecastFreshness = ForecastFreshness()  # SLAs, alerting when missed (lakehouse.common.freshness)
    model_name: str = "forecast_models"
    experiment: str = "forecast"

    @field_validator("horizon", "planning_horizon")
    @classmethod
    def _horizon(cls, value: str) -> str:
        _duration_days(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ForecastSettings:
        cadence = self.cadence
        for name in ("horizon", "planning_horizon"):
            cadence.periods(getattr(self, name))
        if self.eval_step > self.horizon_periods:
            raise ValueError(f"evaluation_step {self.evaluation_step} is beyond the horizon {self.horizon}")
        if self.planning_periods < self.horizon_periods:
            raise ValueError(f"planning_horizon {self.planning_horizon} is shorter than the horizon {self.horizon}")
        return self

    @property
    def cadence(self) -> Cadence:
        m = self.models
        if self.frequency == "D":
            return Cadence(
                "D",
                1,
                7,
                m.lags or (7, 14, 21, 28),
                m.rolling_windows or (7, 28),
                m.date_features or ("dayofweek", "month", "day"),
            )
        return Cadence(
            "W",
            7,
            52,
            m.lags or (1, 2, 3, 4, 8, 13, 52),
            m.rolling_windows or (4, 13),
            m.date_features or ("month", "dayofyear"),
        )

    @property
    def horizon_periods(self) -> int:
        return self.cadence.periods(self.horizon)

    @property
    def planning_periods(self) -> int:
        return self.cadence.periods(self.planning_horizon)

    @property
    def eval_step(self) -> int:
        return self.cadence.periods(self.evaluation_step or ("7d" if self.frequency == "D" else "1w"))

    @property
    def arima_search_weeks(self) -> int | None:
        """`models.arima_search_every` in weeks (None: AutoARIMA searches its orders at every fit)."""
        every = self.models.arima_search_every
        return None if every is None else _duration_days(every) // 7

    @property
    def stat_window_periods(self) -> int:
        return self.cadence.periods(self.models.stat_window or ("16w" if self.frequency == "D" else "104w"))

    def days(self, duration: str) -> int:
        return _duration_days(duration)
