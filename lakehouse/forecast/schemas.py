"""The raw tables of the forecasting case: what a user brings (or the demo's generator writes).

`stores`, `products` and `sales` are required; `promotions`, `events` and `covariates` are
optional, and without one the features it feeds are left out of every model. The hierarchy's
columns are the user's: `hierarchy.store_levels` are required columns of `stores` (the demo's
`region`), `hierarchy.product_levels` of `products` (the demo's `category`, `family`). Their
values are free unless `vocabularies` lists the allowed ones.

Promotions, events and covariates apply at any level: their scope columns (`store_id`, the
store levels, `sku_id`, the product levels; all optional, a null matches everything) say where.
A covariate is any number per day (a price, a markdown amount, a temperature, a fuel price) with
the day it became known (`known_from`; empty: known in advance).

Run `python -m lakehouse.forecast.schemas > docs/forecast_raw_tables.md` after a change.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from lakehouse.common.plausibility import Limits
from lakehouse.common.raw_source import RawBatch, Request
from lakehouse.common.schema import Column, RowRule, TableSchema, validate_frame
from lakehouse.forecast.settings import ForecastSettings

MASTER_TABLES = ("stores", "products", "promotions", "events", "covariates")
OPTIONAL_TABLES = ("promotions", "events", "covariates")


def _allowed(settings: ForecastSettings, name: str) -> tuple[str, ...] | None:
    values = settings.vocabularies.get(name)
    return tuple(values) if values else None


def _level(settings: ForecastSettings, name: str, description: str, nullable: bool = False) -> Column:
    return Column(name, pl.String, description, nullable=nullable, identifier=True, allowed=_allowed(settings, name))


def scope(settings: ForecastSettings) -> tuple[Column, ...]:
    h = settings.hierarchy
    return (
        Column(
            "store_id",
            pl.String,
            "Store it applies to; empty: every store (within the levels set).",
            nullable=True,
            identifier=True,
        ),
        *(
            _level(settings, c, f"Stores level `{c}` it applies to; empty: every member.", nullable=True)
            for c in h.store_levels
        ),
        Column(
            "sku_id",
            pl.String,
            "SKU it applies to; empty: every product (within the levels set).",
            nullable=True,
            identifier=True,
        ),
        *(
            _level(settings, c, f"Products level `{c}` it applies to; empty: every member.", nullable=True)
            for c in h.product_levels
        ),
    )


def stores(settings: ForecastSettings) -> TableSchema:
    return TableSchema(
        name="stores",
        description="One row per store: its hierarchy levels, an optional store type and opening/closing dates.",
        key=("store_id",),
        columns=(
            Column("store_id", pl.String, "Store id, also the Dagster partition key.", identifier=True),
            *(
                _level(settings, c, f"Hierarchy level `{c}` (`hierarchy.store_levels`, from the top).")
                for c in settings.hierarchy.store_levels
            ),
            Column(
                "store_type",
                pl.String,
                "Optional: a store segment used as a feature (e.g. clientele).",
                nullable=True,
                allowed=_allowed(settings, "store_type"),
            ),
            Column(
                "opening_date",
                pl.Date,
                "Optional: first day of trading.",
                nullable=True,
                not_in_future=True,
                before_data=True,
            ),
            Column("closing_date", pl.Date, "Optional: last day of trading.", nullable=True, before_data=True),
        ),
        rules=(
            RowRule(
                "closing_date is not before opening_date",
                pl.col("closing_date") >= pl.col("opening_date"),
                ("closing_date", "opening_date"),
            ),
        ),
    )


def products(settings: ForecastSettings) -> TableSchema:
    return TableSchema(
        name="products",
        description="One row per SKU: its hierarchy levels and optional launch date, perishable flag and unit price.",
        key=("sku_id",),
        columns=(
            Column("sku_id", pl.String, "SKU id.", identifier=True),
            *(
                _level(settings, c, f"Hierarchy level `{c}` (`hierarchy.product_levels`, from the top).")
                for c in settings.hierarchy.product_levels
            ),
            Column(
                "launch_date", pl.Date, "Optional: first day the SKU could be sold.", nullable=True, before_data=True
            ),
            Column(
                "perishable",
                pl.Boolean,
                "Optional: unsold units are wasted at the end of the period (order simulation).",
                nullable=True,
            ),
            Column(
                "unit_price",
                pl.Float64,
                "Optional: shelf price in the economics currency (order simulation, a feature).",
                nullable=True,
                min_value=0,
                quantity=True,
            ),
        ),
    )


def sales(settings: ForecastSettings) -> TableSchema:
    return TableSchema(
        name="sales",
        description=(
            "Units sold per store, SKU and period: one row per day, or per week (`frequency: W`, every row on the same "
            "weekday, the week's last day by default). Rows with zero sales should be present."
        ),
        key=("store_id", "sku_id", "date"),
        columns=(
            Column("store_id", pl.String, "Store.", identifier=True),
            Column("sku_id", pl.String, "SKU.", identifier=True),
            Column("date", pl.Date, "Day, or the date that labels the week.", not_in_future=True),
            Column("units", pl.Float64, "Units sold (negative and fractional values: see `quirks`).", quantity=True),
        ),
    )


def promotions(settings: ForecastSettings) -> TableSchema:
    return TableSchema(
        name="promotions",
        description=(
            "Promotion calendar, every published version: a revision is a new row with a higher version and a later "
            "publication date. A forecast made at T sees only versions published on or before T."
        ),
        key=("promo_id", "version"),
        columns=(
            Column("promo_id", pl.String, "Promotion id.", identifier=True),
            Column("version", pl.Int64, "1 for the first announcement, +1 per revision.", min_value=1),
            *scope(settings),
            Column("start_date", pl.Date, "First promotion day."),
            Column("end_date", pl.Date, "Last promotion day."),
            Column("discount", pl.Float64, "Price cut as a fraction.", min_value=0, max_value=1),
            Column("published_date", pl.Date, "When this version was announced.", not_in_future=True),
        ),
        rules=(
            RowRule(
                "end_date is not before start_date",
                pl.col("end_date") >= pl.col("start_date"),
                ("end_date", "start_date"),
            ),
        ),
    )


def events(settings: ForecastSettings) -> TableSchema:
    return TableSchema(
        name="events",
        description="Holidays and events, known in advance: a flag per day, the day before (eve) and per kind.",
        key=(),
        columns=(
            Column("date", pl.Date, "Day of the event."),
            Column("name", pl.String, "Name."),
            Column(
                "kind",
                pl.String,
                "Optional: kind (holiday, sporting, ...): one feature per kind.",
                nullable=True,
                allowed=_allowed(settings, "kind"),
            ),
            *scope(settings),
        ),
    )


def covariates(settings: ForecastSettings) -> TableSchema:
    return TableSchema(
        name="covariates",
        description=(
            "Numeric signals per day at any level: prices, discounts and markdown amounts, temperatures, fuel "
            "prices... A forecast at T uses the latest value known on or before T (`known_from`; empty: known in "
            "advance). Names listed in `observed_covariates` are actuals: they enter only as lags."
        ),
        key=(),
        columns=(
            Column("name", pl.String, "Covariate name (one feature per name).", identifier=True),
            Column("date", pl.Date, "Day the value is for."),
            Column("value", pl.Float64, "The value."),
            Column(
                "known_from",
                pl.Date,
                "Optional: when the value became known (a forecast's issue date, a plan's publication).",
                nullable=True,
            ),
            *scope(settings),
        ),
    )


SCHEMAS = {
    "stores": stores,
    "products": products,
    "sales": sales,
    "promotions": promotions,
    "events": events,
    "covariates": covariates,
}


def schema(name: str, settings: ForecastSettings) -> TableSchema:
    """The table `name` with the settings' hierarchy, vocabularies and plausibility limits."""
    return SCHEMAS[name](settings).with_limits(Limits.of(settings))


def optional_columns(name: str, settings: ForecastSettings) -> tuple[str, ...]:
    """Columns a file may lack (they are then null: features left out, scope unrestricted)."""
    table = schema(name, settings)
    always = {
        "stores": ("store_id", *settings.hierarchy.store_levels),
        "products": ("sku_id", *settings.hierarchy.product_levels),
    }
    if name in always:
        return tuple(c.name for c in table.columns if c.name not in always[name])
    if name in ("promotions", "events", "covariates"):
        return tuple(c.name for c in table.columns if c.nullable)
    return ()


def _world(overrides: Mapping):
    """The generator's world: `scale` (demo | full | STORESxSKUS) and `seed` over LAKEHOUSE_FORECAST_SCALE."""
    from lakehouse.forecast.world import WorldConfig, scale_counts

    world = WorldConfig.from_env()
    if overrides.get("scale"):
        stores, skus = scale_counts(overrides["scale"])
        world = world.with_(stores=stores, skus=skus)
    return world.with_(seed=overrides["seed"]) if overrides.get("seed") is not None else world


def generated_master_tables(overrides: Mapping, request: Request) -> RawBatch:
    """The raw-source seam's generator side for the master tables: the synthetic grocery chain (its rules across
    tables are the case's `check`, as for a user's files)."""
    from lakehouse.forecast.world import master_tables

    world = _world(overrides)
    request.log(f"generating the grocery chain: {world.stores} stores x {world.skus} SKUs, seed {world.seed}")
    origin = f"generator (seed {world.seed}, {world.stores} stores x {world.skus} SKUs)"
    return RawBatch(master_tables(world), origin)


def generated_sales(overrides: Mapping, request: Request) -> RawBatch:
    """The raw-source seam's generator side for sales: the selected stores' days (`request.inputs["master"]`, the
    stored master tables), through the sales schema."""
    from lakehouse.forecast.world import store_sales

    world = _world(overrides)
    label = f"generator (seed {world.seed})"
    frame = pl.concat([store_sales(world, request.inputs["master"], s) for s in request.keys])
    sales_schema = schema("sales", request.settings)
    return RawBatch({"sales": validate_frame(frame, sales_schema, source=label, today=request.today)}, label)


def markdown(settings: ForecastSettings | None = None) -> str:
    """The documentation of the forecast raw tables (docs/forecast_raw_tables.md), for the default hierarchy."""
    settings = settings or ForecastSettings()
    parts = [
        "# Forecast raw tables",
        "",
        "Bring your own data: list the case in the sources file (`LAKEHOUSE_SOURCES`, see the README) with one "
        "mapping per table below. `promotions`, `events` and `covariates` are optional: without them the features "
        "they feed are left out. Every file is validated before anything is written; a bad file stops the run with "
        "one error naming the file, the column and example rows, and the lake keeps its previous content. The level "
        "columns shown are the default "
        "`hierarchy` (`region`; `category`, `family`): yours are the columns you name there.",
    ]
    for name in ("stores", "products", "sales", *OPTIONAL_TABLES):
        table = schema(name, settings)
        optional = " (optional)" if name in OPTIONAL_TABLES else ""
        absent = optional_columns(name, settings)
        note = f" Columns a file may leave out: {', '.join(f'`{c}`' for c in absent)}." if absent else ""
        parts += ["", f"## {name}{optional}", "", table.description + note, "", table.markdown().rstrip("\n")]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
