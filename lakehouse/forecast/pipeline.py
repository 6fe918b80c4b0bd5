"""The forecasting case's steps, one function each: what the assets, the demo, the benchmarks and
the tests all call. Each takes frames, the `Lake` and the settings, and returns results and, for
the monitored steps, `CheckOutcome`s. No Dagster here.

Weekly: `refit` (validation backtest -> routing -> fit -> MLflow challenger), `backtest` (test
window, like for like, champion included), `gate`. Nightly: `ingest_sales`, `nightly_forecast`
from the champion's fitted state, `reconcile_forecast`, `publish`, `live_accuracy`. Planning:
`planning_forecast` over the planning horizon, same models, same reconciliation.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from lakehouse.common import promotion
from lakehouse.common.checks import CheckOutcome
from lakehouse.common.lake import Lake, safe_value
from lakehouse.common.loads import PartitionedLoad, split_partitions
from lakehouse.common.promotion import Verdict
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.common.schema import Column, InputDataError, TableSchema, validate_frame, validate_references
from lakehouse.common.settings import DateRange
from lakehouse.common.sources import CaseSource, load_table
from lakehouse.forecast.data import CaseData, periods_of
from lakehouse.forecast.evaluation import (
    ROUTED,
    SEASONAL_NAIVE,
    Rival,
    accuracy,
    drift_outcome,
    economics_note,
    financial_impact,
    gate_comparison,
    gate_verdict,
    level_accuracy,
    matured_accuracy,
    pooled,
    rolling_forecasts,
    select_routing,
    simulate_orders,
    windows,
    with_unit_economics,
)
from lakehouse.forecast.features import scope_columns
from lakehouse.forecast.lifecycle import load_models, log_models
from lakehouse.forecast.models import FittedModels, fit_models, forecast_candidates
from lakehouse.forecast.reconcile import DEFAULTS as RECONCILIATION_DEFAULTS
from lakehouse.forecast.reconcile import (
    aggregate_base_forecasts,
    aggregate_history,
    best_method,
    choose,
    coherence,
    reconcile,
    reconciliation_backtest,
)
from lakehouse.forecast.schemas import MASTER_TABLES, OPTIONAL_TABLES, optional_columns, schema
from lakehouse.forecast.settings import CASE, LIGHTGBM, SEGMENTS, ForecastSettings

SALES = "sales"
STORE_FORECASTS = "store_forecasts"
STORE_KEY = "store"
ORIGIN_KEY = "origin"


# --------------------------------------------------------------------------- master tables


@dataclass
class MasterTables:
    """Validated master tables; an optional table the source does not have is None (the stored one stays)."""

    tables: dict[str, pl.DataFrame | None]
    source: str
    ignored: dict[str, list[str]] = field(default_factory=dict)  # their columns no mapping reads


def load_master_tables(source: CaseSource, settings: ForecastSettings, today: date) -> MasterTables:
    """Map and validate every master table of the user's source, all or nothing."""
    source.check_no_misnamed_files([*MASTER_TABLES, SALES])
    tables, labels, ignored = {}, {}, {}
    for name in MASTER_TABLES:
        loaded = load_table(
            source,
            table_schema(name, settings),
            today=today,
            optional=optional_columns(name, settings),
            required=name not in OPTIONAL_TABLES,
        )
        tables[name] = None if loaded is None else complete(loaded.frame, name, settings)
        labels[name] = loaded.label if loaded is not None else name
        ignored[name] = loaded.ignored if loaded is not None else []
    check_master_tables(tables, labels, settings)
    return MasterTables(tables, str(source.folder), ignored)


def validate_master_tables(
    frames: dict[str, pl.DataFrame], settings: ForecastSettings, today: date, label: str
) -> MasterTables:
    """The same rules for tables that come as frames (the demo's generator)."""
    tables = {
        name: validate_frame(
            complete(frames[name], name, settings), table_schema(name, settings), source=label, today=today
        )
        if name in frames
        else None
        for name in MASTER_TABLES
    }
    check_master_tables(tables, dict.fromkeys(MASTER_TABLES, label), settings)
    return MasterTables(tables, label)


def table_schema(name: str, settings: ForecastSettings) -> TableSchema:
    """A raw table's schema with the attribute columns the settings name (`attributes.stores`, `.products`)."""
    table = schema(name, settings)
    extra = {"stores": settings.attributes.stores, "products": settings.attributes.products}.get(name, {})
    columns = tuple(
        Column(
            column,
            pl.Float64 if kind == "number" else pl.String,
            f"Attribute ({kind}, `attributes.{name}`): a static feature of the models.",
            nullable=True,
        )
        for column, kind in extra.items()
        if column not in table.column_names
    )
    return dataclasses.replace(table, columns=table.columns + columns) if columns else table


def complete(frame: pl.DataFrame, name: str, settings: ForecastSettings) -> pl.DataFrame:
    """Optional columns a file lacks, as nulls of their declared type, in the schema's order."""
    table = table_schema(name, settings)
    missing = [pl.lit(None, c.polars_dtype).alias(c.name) for c in table.columns if c.name not in frame.columns]
    return frame.with_columns(missing).select(table.column_names)


def check_master_tables(
    tables: dict[str, pl.DataFrame | None], labels: dict[str, str], settings: ForecastSettings
) -> None:
    """Scopes that name unknown stores, products or level members; ambiguous covariate values."""
    parents = {c: ("stores", tables["stores"]) for c in ("store_id", *settings.hierarchy.store_levels)}
    parents |= {c: ("products", tables["products"]) for c in ("sku_id", *settings.hierarchy.product_levels)}
    for name in OPTIONAL_TABLES:
        frame = tables.get(name)
        if frame is None:
            continue
        for column in scope_columns(settings):
            parent_table, parent = parents[column]
            validate_references(
                frame, column, parent, column, source=labels[name], table=name, parent_table=parent_table
            )
    covariates = tables.get("covariates")
    if covariates is not None:
        key = ["name", "date", "known_from", *scope_columns(settings)]
        dupes = covariates.with_row_index("row").filter(pl.struct(key).is_duplicated())
        if dupes.height:
            raise InputDataError(
                labels["covariates"],
                "covariates",
                "value",
                f"{dupes.height} rows give a covariate twice for the same day, scope and known_from: keep one",
                dupes,
                ["name", "date", "known_from"],
            )


def write_master_tables(lake: Lake, master: MasterTables, settings: ForecastSettings) -> dict[str, int]:
    """Write the tables the source has, all at once; an absent optional table keeps what is stored (an
    empty one is written only when nothing is). Row counts of what the lake now holds."""
    writes, counts = {}, {}
    for name, frame in master.tables.items():
        if frame is None and lake.exists(CASE, name):
            counts[name] = lake.read(CASE, name).height
            continue
        writes[(CASE, name, None)] = frame if frame is not None else table_schema(name, settings).empty()
        counts[name] = writes[(CASE, name, None)].height
    lake.write_many(writes)
    return counts


def read_master_tables(lake: Lake) -> dict[str, pl.DataFrame | None]:
    """The stored master tables; an empty optional table is None (its features are left out)."""
    tables = {name: lake.read(CASE, name) if lake.exists(CASE, name) else None for name in MASTER_TABLES}
    for name in ("stores", "products"):
        if tables[name] is None:
            raise FileNotFoundError(f"no {name} table in the lake: materialize the forecast master tables first")
    return {
        name: None if frame is None or (name in OPTIONAL_TABLES and frame.is_empty()) else frame
        for name, frame in tables.items()
    }


# --------------------------------------------------------------------------- sales


def load_sales(source: CaseSource, settings: ForecastSettings, today: date) -> tuple[pl.DataFrame, str]:
    """The user's whole sales file, mapped and validated once per run."""
    loaded = load_table(source, schema(SALES, settings), today=today)
    return loaded.frame, loaded.label


def prepare_sales(
    frame: pl.DataFrame,
    label: str,
    master: dict[str, pl.DataFrame | None],
    settings: ForecastSettings,
    selected: Sequence[str],
    rows_outside_selection: str = "refuse",
    replace_with_empty: bool = False,
) -> PartitionedLoad:
    """`frame`: validated sales (`load_sales`, or the generator's through `validate_frame`). Apply the quirk
    choices, then refuse what cannot be stored: unknown stores or products, dates before
    the calendar, weekly rows on several weekdays; split the rows into the selected store partitions."""
    frame = apply_quirks(frame, label, settings)
    start = settings.calendar.start
    early = frame.with_row_index("row").filter(pl.col("date") < start)
    if early.height:
        raise InputDataError(
            label,
            SALES,
            "date",
            f"{early.height} row(s) dated before the calendar's start {start}: "
            f"move it with {ForecastSettings.where('calendar.start')}",
            early,
        )
    if settings.frequency == "W":
        check_weekly(frame, label, settings)
    frame = fill_missing_periods(frame, label, settings)
    stores, products = master["stores"], master["products"]
    validate_references(frame, "store_id", stores, "store_id", source=label, table=SALES, parent_table="stores")
    validate_references(frame, "sku_id", products, "sku_id", source=label, table=SALES, parent_table="products")
    return split_partitions(
        frame,
        pl.col("store_id"),
        selected=selected,
        allowed=stores["store_id"].to_list(),
        label=label,
        table=SALES,
        column="store_id",
        calendar_hint="the stores table (every store there is a partition)",
        rows_outside_selection=rows_outside_selection,
        replace_with_empty=replace_with_empty,
    )


def apply_quirks(frame: pl.DataFrame, label: str, settings: ForecastSettings) -> pl.DataFrame:
    """Negative units (returns) and fractional units (goods sold by weight), as `quirks` says."""
    quirks = settings.quirks
    negative = frame.with_row_index("row").filter(pl.col("units") < 0)
    if negative.height and quirks.negative_units == "refuse":
        raise InputDataError(
            label,
            SALES,
            "units",
            f"{negative.height} negative value(s) (returns?): "
            f"set {ForecastSettings.where('quirks.negative_units')} to clip or keep them",
            negative,
        )
    fractional = frame.with_row_index("row").filter(pl.col("units") != pl.col("units").round())
    if fractional.height and quirks.fractional_units == "refuse":
        raise InputDataError(
            label,
            SALES,
            "units",
            f"{fractional.height} fractional value(s): "
            f"set {ForecastSettings.where('quirks.fractional_units')} to keep or round them",
            fractional,
        )
    units = pl.col("units")
    if quirks.negative_units == "clip":
        units = units.clip(lower_bound=0.0)
    if quirks.fractional_units == "round":
        units = units.round()
    return frame.with_columns(units)


def check_weekly(frame: pl.DataFrame, label: str, settings: ForecastSettings) -> None:
    days = frame.with_row_index("row").with_columns(weekday=pl.col("date").dt.weekday())
    expected = (
        (["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"].index(settings.week_day) + 1)
        if settings.week_day
        else int(days["weekday"].mode().sort()[0])
    )
    other = days.filter(pl.col("weekday") != expected)
    if other.height:
        raise InputDataError(
            label,
            SALES,
            "date",
            f"{other.height} weekly row(s) not on the weekday the other rows use ({expected}, 1 = Monday): "
            "one date per week, always the same weekday",
            other,
        )


def missing_periods(frame: pl.DataFrame, days: int) -> pl.DataFrame:
    """store_id, sku_id, date of every period missing between a series' first and last row."""
    spans = frame.group_by("store_id", "sku_id").agg(
        first=pl.col("date").min(), last=pl.col("date").max(), rows=pl.col("date").n_unique()
    )
    gappy = spans.filter((pl.col("last") - pl.col("first")).dt.total_days() // days + 1 > pl.col("rows"))
    if gappy.is_empty():
        return frame.select("store_id", "sku_id", "date").head(0)
    every = gappy.select("store_id", "sku_id", date=pl.date_ranges("first", "last", interval=f"{days}d")).explode(
        "date"
    )
    return every.join(frame.select("store_id", "sku_id", "date"), on=["store_id", "sku_id", "date"], how="anti").sort(
        "store_id", "sku_id", "date"
    )


def fill_missing_periods(frame: pl.DataFrame, label: str, settings: ForecastSettings) -> pl.DataFrame:
    """Periods missing inside a series: refused with the series and dates (`quirks.missing_periods: refuse`, the
    default), or added as rows of 0 units (`zero`: a file that leaves out periods without sales)."""
    missing = missing_periods(frame, settings.cadence.days)
    if missing.is_empty():
        return frame
    if settings.quirks.missing_periods == "zero":
        return pl.concat([frame, missing.with_columns(units=pl.lit(0.0))], how="diagonal_relaxed").sort(
            "store_id", "sku_id", "date"
        )
    per = missing.group_by("store_id", "sku_id", maintain_order=True).agg(pl.col("date"))
    examples = "; ".join(
        f"{store}/{sku}: {', '.join(str(d) for d in dates[:3])}{' ...' if len(dates) > 3 else ''}"
        for store, sku, dates in per.head(3).iter_rows()
    )
    raise InputDataError(
        label,
        SALES,
        "date",
        f"{missing.height} period(s) missing inside {per.height} series between their first and last rows "
        f"(e.g. {examples}): a period without sales is a row of 0 units; add them, or set "
        f"{ForecastSettings.where('quirks.missing_periods')} to `zero` to fill them with 0",
    )


def write_sales(lake: Lake, load: PartitionedLoad) -> int:
    lake.write_many({(CASE, SALES, (STORE_KEY, store)): frame for store, frame in load.frames.items()})
    return sum(f.height for f in load.frames.values())


def read_case_data(lake: Lake, stores: Sequence[str] | None = None) -> CaseData:
    """The stored tables, with the sales of the given stores (all stored stores by default)."""
    master = read_master_tables(lake)
    sales = lake.read_partitions(CASE, SALES, STORE_KEY, list(stores) if stores is not None else None)
    return CaseData(
        master["stores"], master["products"], sales, master["promotions"], master["events"], master["covariates"]
    )


# --------------------------------------------------------------------------- weekly refit, backtest, gate


@dataclass
class Refit:
    fitted: FittedModels
    version: str
    run_id: str
    selection: pl.DataFrame


def refit(
    data: CaseData,
    settings: ForecastSettings,
    registry: Registry,
    run_name: str,
    as_of: date | None = None,
    log=lambda *_: None,
) -> Refit:
    """Choose each segment's model on the validation window, fit on everything known at `as_of` (default
    the last day of data; AutoARIMA keeps the champion's orders where no search is due), register the
    challenger."""
    periods = periods_of(settings, data.sales)
    as_of = as_of or data.last_day
    known = data.until(as_of)
    rows, window = None, None
    if settings.models.selection == "validation":
        window = windows(known, settings)["validation"]
        log(f"model selection on the validation window {window.start} .. {window.end}")
        rows, _ = rolling_forecasts(known, window, settings, periods, log=log)
    routing, selection = select_routing(rows, settings)
    # The champion's AutoARIMA orders are kept where no new search is due (`models.arima_search_every`).
    champion = load_models(registry, settings, CHAMPION) if settings.arima_search_weeks else None
    previous = None if champion is None else champion[0]
    fitted = fit_models(known, settings, periods, routing=routing, log=log, previous=previous)
    fitted.selection = selection
    version, run_id = log_models(registry, fitted, settings, run_name)
    trained = f"history {known.sales['date'].min()} .. {as_of}" + (
        f"; routing chosen on {window.start} .. {window.end}" if window else "; the seed's routing"
    )
    promotion.tag_training(registry, settings.model_name, version, str(as_of), trained)
    return Refit(fitted, version, run_id, selection)


@dataclass
class Backtest:
    rows: pl.DataFrame  # every candidate's forecasts and the actuals, per series, origin and step
    report: pl.DataFrame  # model x segment x step: WAPE, MAPE, MASE on like-for-like rows
    levels: pl.DataFrame  # model x level at the evaluation step
    comparison: pl.DataFrame  # challenger, champion and seasonal naive on the gate's rows
    challenger: str  # the version evaluated
    champion: str | None
    info: dict
    planning: pl.DataFrame  # the long horizon from the first origin alone, per series and period
    planning_report: pl.DataFrame  # model: wape, mape, rows over the long horizon
    reconciliation: pl.DataFrame  # horizon, method, level: wape, rows; `chosen` per horizon

    def verdict(self, settings: ForecastSettings) -> Verdict:
        """The gate's verdict on the version evaluated: like for like against the champion's configuration
        refitted at the same cut-offs, and the seasonal naive."""
        return gate_verdict(
            self.rows,
            self.challenger,
            self.champion,
            settings.model_name,
            settings,
            basis=self.info.get("champion_basis", ""),
        )


def backtest(
    data: CaseData,
    settings: ForecastSettings,
    registry: Registry,
    version: str | None = None,
    window: DateRange | None = None,
    log=lambda *_: None,
) -> Backtest:
    """A registered version's configuration (the challenger by default) on a window (the latest test window
    by default), fitted at the window's first origin, with every candidate, the seasonal naive and the
    champion's configuration fitted at the same cut-off: the same rows, out of sample for every model."""
    loaded = load_models(registry, settings, CHALLENGER, stores=[], version=version)
    if loaded is None:
        raise LookupError(
            f"{settings.model_name} has no version {version}"
            if version
            else f"{settings.model_name} has no challenger: run the weekly refit first"
        )
    fitted, version = loaded
    current = load_models(registry, settings, CHAMPION, stores=[])
    champion = None if current is None or current[1] == version else Rival.of(*current)
    periods = periods_of(settings, data.sales)
    window = window or windows(data, settings)["test"]
    log(
        f"backtest of v{version} on {window.start} .. {window.end}"
        + (f" against champion v{champion.version}'s configuration" if champion else "")
    )
    rows, info = rolling_forecasts(
        data, window, settings, periods, routing=fitted.routing, champion=champion, log=log, planning=True
    )
    report = accuracy(rows, info.pop("train"), settings, periods)
    levels = level_accuracy(rows, data.stores, settings, periods, settings.eval_step)
    planning = info.pop("planning")
    log("backtest: reconciliation of both horizons, every method")
    reconciliation, chosen = reconciliation_choice(rows, planning, data, info["fits"], periods, settings)
    info |= {"window": f"{window.start} .. {window.end}", "routing": fitted.routing, "reconciliation": chosen}
    return Backtest(
        rows,
        report,
        levels,
        gate_comparison(rows),
        version,
        champion.version if champion else None,
        info,
        planning,
        pooled(planning, [ROUTED, LIGHTGBM, SEASONAL_NAIVE]),
        reconciliation,
    )


def reconciliation_choice(
    rows: pl.DataFrame, planning: pl.DataFrame, data: CaseData, fits: list, periods, settings: ForecastSettings
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Each horizon's reconciliation method, chosen on the backtest: the operational one on every origin's
    steps 1..horizon, the planning one on the long horizon from the first origin."""
    tables, chosen = [], {}
    for horizon, part in (("operational", rows), ("planning", planning)):
        scores = reconciliation_backtest(part, data.sales, data.stores, fits, periods, settings)
        chosen[horizon] = best_method(scores, RECONCILIATION_DEFAULTS[horizon])
        tables.append(scores.with_columns(horizon=pl.lit(horizon), chosen=pl.col("method") == chosen[horizon]))
    return pl.concat(tables).select("horizon", "method", "level", "wape", "rows", "chosen"), chosen


def write_backtest(lake: Lake, result: Backtest) -> None:
    lake.write_many(
        {
            (CASE, "backtest", None): result.report,
            (CASE, "backtest_levels", None): result.levels,
            (CASE, "backtest_forecasts", None): result.rows,
            (CASE, "gate_comparison", None): result.comparison,
            (CASE, "backtest_long_horizon", None): result.planning,
            (CASE, "backtest_reconciliation", None): result.reconciliation,
        }
    )


def write_evaluation(lake: Lake, result: Backtest) -> None:
    """An on-demand evaluation, apart from the weekly backtest (whose tables the reports read)."""
    lake.write_many(
        {
            (CASE, "evaluation", None): result.report.with_columns(version=pl.lit(result.challenger)),
            (CASE, "evaluation_levels", None): result.levels.with_columns(version=pl.lit(result.challenger)),
            (CASE, "evaluation_forecasts", None): result.rows,
        }
    )


# --------------------------------------------------------------------------- nightly


def serving_models(
    registry: Registry, settings: ForecastSettings, stores: Sequence[str]
) -> tuple[FittedModels, promotion.ModelChoice] | None:
    """The champion's fitted state, or with no champion yet the latest challenger's in shadow (its forecasts
    are written and evaluated, never published); None when no version exists."""
    choice = promotion.serving_choice(registry, settings.model_name)
    if choice is None:
        return None
    loaded = load_models(registry, settings, stores=list(stores), version=choice.version)
    return None if loaded is None else (loaded[0], choice)


def nightly_forecast(
    data: CaseData,
    models: FittedModels,
    choice: promotion.ModelChoice,
    origin: date,
    settings: ForecastSettings,
    horizon: int | None = None,
) -> tuple[pl.DataFrame, list[CheckOutcome]]:
    """Every active series of the stores in `data` over periods 1..horizon after `origin`, each by its
    segment's routed model from the fitted state, marked with the version and whether it is in shadow;
    the volume checks of the worst store. With `models.engine: dask`, one task per store on the cluster."""
    from lakehouse.forecast.distributed import dask_client, forecast_stores

    horizon = horizon or settings.horizon_periods
    if settings.models.engine == "dask":
        with dask_client(settings) as client:
            base = forecast_stores(client, forecast_candidates, models, data, origin, horizon, settings)
    else:
        base = forecast_candidates(models, data, origin, horizon, settings)
    forecasts = marked(base, choice)
    return forecasts, store_checks(data, forecasts, origin, horizon, settings)


def marked(forecasts: pl.DataFrame, choice: promotion.ModelChoice) -> pl.DataFrame:
    """`model_version`, and `shadow`: true for a version that has not been promoted (never published)."""
    return forecasts.with_columns(model_version=pl.lit(choice.version), shadow=pl.lit(choice.shadow))


def store_checks(
    data: CaseData, forecasts: pl.DataFrame, origin: date, horizon: int, settings: ForecastSettings
) -> list[CheckOutcome]:
    """forecast_volume (ERROR): at least `volume_min_share` of each store's active series forecast;
    no_missing_series (WARN): every active series has its whole horizon. The worst store is reported."""
    from lakehouse.forecast.models import active_series

    active = active_series(data, origin).group_by("store_id").len().rename({"len": "active"})
    got = (
        forecasts.group_by("store_id", "sku_id")
        .agg(steps=pl.len())
        .group_by("store_id")
        .agg(series=pl.len(), complete=(pl.col("steps") == horizon).sum())
    )
    per = (
        active.join(got, on="store_id", how="left")
        .with_columns(pl.col("series", "complete").fill_null(0))
        .with_columns(share=pl.col("series") / pl.col("active"), missing=pl.col("active") - pl.col("complete"))
    )
    worst_volume = (
        per.sort("share").row(0, named=True)
        if per.height
        else {"store_id": None, "share": 1.0, "series": 0, "active": 0, "missing": 0}
    )
    worst_missing = per.sort("missing", descending=True).row(0, named=True) if per.height else worst_volume
    return [
        CheckOutcome(
            "forecast_volume",
            worst_volume["share"] >= settings.volume_min_share,
            worst_volume["series"],
            f">= {settings.volume_min_share:.0%} of {worst_volume['active']:,} active series",
            f"worst store {worst_volume['store_id']}: "
            f"{worst_volume['series']:,} of {worst_volume['active']:,} series forecast",
            "ERROR",
            {"stores": per.height, "store": worst_volume["store_id"]},
        ),
        CheckOutcome(
            "no_missing_series",
            worst_missing["missing"] == 0,
            worst_missing["missing"],
            "0 active series without a whole horizon",
            f"worst store {worst_missing['store_id']}: "
            f"{worst_missing['missing']} active series without {horizon} periods",
            "WARN",
            {"store": worst_missing["store_id"]},
        ),
    ]


def write_store_forecasts(lake: Lake, forecasts: pl.DataFrame, origin: date) -> None:
    """One file per store under the origin's partition: a store's run rewrites only its own file."""
    for (store,), part in forecasts.group_by(["store_id"]):
        buffer = io.BytesIO()
        part.write_parquet(buffer)
        lake.write_bytes(
            buffer.getvalue(), CASE, STORE_FORECASTS, f"{safe_value(store)}.parquet", (ORIGIN_KEY, origin.isoformat())
        )


def read_store_forecasts(lake: Lake, origin: date | None = None) -> pl.DataFrame:
    """The stored nightly forecasts of one origin (the latest by default), or of every origin."""
    origins = lake.partitions(CASE, STORE_FORECASTS, ORIGIN_KEY)
    if not origins:
        raise FileNotFoundError("no stored forecast yet: materialize forecast/store_forecasts first")
    chosen = [origin.isoformat() if origin else origins[-1]]
    return lake.read_partitions(CASE, STORE_FORECASTS, ORIGIN_KEY, chosen)


def all_store_forecasts(lake: Lake) -> pl.DataFrame:
    return (
        lake.read_partitions(CASE, STORE_FORECASTS, ORIGIN_KEY)
        if lake.partitions(CASE, STORE_FORECASTS, ORIGIN_KEY)
        else pl.DataFrame()
    )


# --------------------------------------------------------------------------- reconciliation


def reconcile_forecast(
    base: pl.DataFrame, data: CaseData, settings: ForecastSettings, method: str
) -> tuple[pl.DataFrame, CheckOutcome]:
    """Every reconciliation method at every node of the tree, `reconciled` being `method`'s (the one the
    backtest chose for the horizon); the check on it."""
    periods = periods_of(settings, data.sales)
    labels = sorted(base["ds"].unique().to_list())
    known = data.until(base["origin"].max())
    aggregate = aggregate_base_forecasts(
        aggregate_history(known.sales, data.stores, settings), labels, periods, settings
    )
    table = reconcile(base.select("store_id", "sku_id", "ds", "yhat"), aggregate, data.stores, settings)
    table = choose(table, method).with_columns(
        origin=pl.lit(base["origin"].max()),
        **{c: pl.lit(base[c][0]) for c in ("model_version", "shadow") if c in base.columns},
    )
    return table, coherence_outcome(table, method, settings)


def coherence_outcome(table: pl.DataFrame, method: str, settings: ForecastSettings) -> CheckOutcome:
    stats = coherence(table, method)
    tolerance = 1e-6
    return CheckOutcome(
        "coherent_and_non_negative",
        stats["max_relative_gap"] <= tolerance and stats["negative_values"] == 0,
        stats["max_relative_gap"],
        f"<= {tolerance} relative gap, 0 negatives",
        f"{method.replace('_', '-')}: {stats['parents_checked']:,} parents checked, "
        f"largest gap {stats['max_relative_gap']:.1e}, {stats['negative_values']} negative",
        "ERROR",
        {"parents_checked": stats["parents_checked"], "negative_values": stats["negative_values"]},
    )


def planning_forecast(
    data: CaseData,
    models: FittedModels,
    choice: promotion.ModelChoice,
    origin: date,
    settings: ForecastSettings,
    method: str,
) -> tuple[pl.DataFrame, CheckOutcome]:
    """The planning horizon from the same fitted state (recursive), reconciled by `method`."""
    base = marked(forecast_candidates(models, data, origin, settings.planning_periods, settings), choice)
    return reconcile_forecast(base, data, settings, method)


# --------------------------------------------------------------------------- monitoring and money


def live_accuracy(
    forecasts: pl.DataFrame,
    sales: pl.DataFrame,
    backtest_report: pl.DataFrame | None,
    settings: ForecastSettings,
    margin: float | None = None,
) -> tuple[pl.DataFrame, CheckOutcome]:
    label = settings.cadence.step_label(settings.eval_step)
    table = (
        matured_accuracy(forecasts, sales, settings.eval_step)
        if not forecasts.is_empty()
        else matured_accuracy(
            pl.DataFrame(
                schema={
                    "store_id": pl.String,
                    "sku_id": pl.String,
                    "ds": pl.Date,
                    "step": pl.Int32,
                    "yhat": pl.Float64,
                    "origin": pl.Date,
                    "segment": pl.String,
                }
            ),
            sales,
            settings.eval_step,
        )
    )
    return table, drift_outcome(table, backtest_report, settings, label, margin)


@dataclass
class Impact:
    orders: pl.DataFrame
    money: pl.DataFrame
    figures: dict
    note: str


def financial_report(rows: pl.DataFrame, products: pl.DataFrame, settings: ForecastSettings) -> Impact:
    """Order simulation on the backtest (the routed models against the seasonal naive, standing for the
    manual forecasters), savings and ROI in the economics' currency."""
    e = settings.economics
    priced = with_unit_economics(rows, products)
    ahead = settings.eval_step
    ours = simulate_orders(priced, ROUTED, ahead, e.order_safety_factor)
    baseline = simulate_orders(priced, SEASONAL_NAIVE, ahead, e.order_safety_factor)
    impact = financial_impact(ours, baseline, settings)
    orders = pl.DataFrame(
        {
            "measure": ["overstock, % of demand value", "stockouts, % of demand value"],
            "seasonal naive": [baseline["overstock_pct"], baseline["stockout_pct"]],
            "models": [ours["overstock_pct"], ours["stockout_pct"]],
            "seed before": list(e.seed_overstock[:1] + e.seed_stockout[:1]),
            "seed after": list(e.seed_overstock[1:] + e.seed_stockout[1:]),
        }
    )
    money = pl.DataFrame(
        {
            "item": [
                "annual revenue base",
                "overstock saving",
                "recovered margin",
                "annual savings",
                "investment",
                "ROI year 1 (x)",
            ],
            "ours": [
                impact["annual_revenue"],
                impact["overstock_saving"],
                impact["recovered_margin"],
                impact["annual_savings"],
                impact["investment"],
                impact["roi_year1"],
            ],
            "seed": [None, None, None, e.seed_annual_savings, e.investment, e.seed_roi],
        }
    )
    return Impact(
        orders, money, {**impact, "model": ours, "baseline": baseline, "periods_ahead": ahead}, economics_note(settings)
    )


def segment_counts(segments: pl.DataFrame) -> dict[str, int]:
    counts = dict(segments.group_by("segment").len().iter_rows())
    return {s: int(counts.get(s, 0)) for s in SEGMENTS}
