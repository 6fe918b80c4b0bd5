"""The raw tables of the forecasting case: what the generator writes and what users may bring.

`sales`, `stores` and `products` are required. `promotions`, `weather_forecasts` and `events`
are optional: without one of them the features it feeds are left out of every model.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from lakehouse.common.schema import Column, InputDataError, TableSchema, read_table, validate_references
from lakehouse.forecast.config import REGIONS
from lakehouse.forecast.world import CATEGORIES, EVENT_KINDS, STORE_TYPES

STORES = TableSchema(
    name="stores",
    description="One row per store: region, tourist or residential clientele, opening date.",
    key=("store_id",),
    columns=(
        Column("store_id", pl.String, "Store id, also the Dagster partition key (e.g. north-s001)."),
        Column("region", pl.String, "Region (the hierarchy level between the nation and the store).", allowed=REGIONS),
        Column("store_type", pl.String, "Clientele.", allowed=STORE_TYPES),
        Column("opening_date", pl.Date, "First day of trading.", not_in_future=True),
    ),
)

PRODUCTS = TableSchema(
    name="products",
    description="One row per SKU: category, family, launch date, perishable flag and price.",
    key=("sku_id",),
    columns=(
        Column("sku_id", pl.String, "SKU id."),
        Column("category", pl.String, "Category.", allowed=tuple(CATEGORIES)),
        Column("family", pl.String, "Family of similar products (new products borrow its sales level)."),
        Column("launch_date", pl.Date, "First day the SKU could be sold."),
        Column("perishable", pl.Boolean, "Unsold units are wasted at the end of the day."),
        Column("price_eur", pl.Float64, "Shelf price in EUR.", min_value=0),
    ),
)

SALES = TableSchema(
    name="sales",
    description="Units sold per store, SKU and day (explicit zeros for days without a sale).",
    key=("store_id", "sku_id", "date"),
    columns=(
        Column("store_id", pl.String, "Store."),
        Column("sku_id", pl.String, "SKU."),
        Column("date", pl.Date, "Day of sale.", not_in_future=True),
        Column("units", pl.Int64, "Units sold.", min_value=0),
    ),
)

PROMOTIONS = TableSchema(
    name="promotions",
    description=(
        "Promotion calendar, every published version: a revision is a new row with a higher version and a later "
        "publication date. A forecast made at T sees only versions published on or before T."
    ),
    key=("promo_id", "version"),
    columns=(
        Column("promo_id", pl.String, "Promotion id."),
        Column("version", pl.Int64, "1 for the first announcement, +1 per revision.", min_value=1),
        Column("sku_id", pl.String, "SKU on promotion."),
        Column("region", pl.String, "Region it runs in; empty for the whole chain.", nullable=True, allowed=REGIONS),
        Column("start_date", pl.Date, "First promotion day."),
        Column("end_date", pl.Date, "Last promotion day."),
        Column("discount_pct", pl.Float64, "Price cut as a fraction.", min_value=0, max_value=1),
        Column("published_date", pl.Date, "When this version was announced.", not_in_future=True),
    ),
)

WEATHER_FORECASTS = TableSchema(
    name="weather_forecasts",
    description="Weather forecasts per region as issued (issue date, target date up to 7 days ahead).",
    key=("region", "issue_date", "target_date"),
    columns=(
        Column("region", pl.String, "Region.", allowed=REGIONS),
        Column("issue_date", pl.Date, "When the forecast was issued.", not_in_future=True),
        Column("target_date", pl.Date, "Day forecast."),
        Column("temp_c", pl.Float64, "Forecast mean temperature in Celsius.", min_value=-40, max_value=50),
    ),
)

EVENTS = TableSchema(
    name="events",
    description="Public holidays (whole chain) and local events (one region).",
    key=("date", "kind", "name"),
    columns=(
        Column("date", pl.Date, "Day of the event."),
        Column("region", pl.String, "Region; empty for a national holiday.", nullable=True, allowed=REGIONS),
        Column("kind", pl.String, "Holiday or local event.", allowed=EVENT_KINDS),
        Column("name", pl.String, "Name."),
    ),
)

MASTER_TABLES = (STORES, PRODUCTS, PROMOTIONS, WEATHER_FORECASTS, EVENTS)
OPTIONAL_TABLES = ("promotions", "weather_forecasts", "events")
RAW_TABLES = (*MASTER_TABLES, SALES)


def _find(directory: Path, name: str) -> Path | None:
    found = [directory / f"{name}{suffix}" for suffix in (".parquet", ".csv") if (directory / f"{name}{suffix}").is_file()]
    if len(found) > 1:
        raise InputDataError(str(directory), name, None, f"both {found[0].name} and {found[1].name} exist; keep only one")
    return found[0] if found else None


def load_master_tables(directory: str | Path, today: date) -> dict[str, pl.DataFrame]:
    """Read and validate the master tables; optional ones that are absent come back empty."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputDataError(str(directory), "stores", None, "input directory not found")
    tables: dict[str, pl.DataFrame] = {}
    for schema in MASTER_TABLES:
        path = _find(directory, schema.name)
        if path is None:
            if schema.name not in OPTIONAL_TABLES:
                raise InputDataError(str(directory), schema.name, None, f"no input file; expected {schema.name}.parquet or {schema.name}.csv")
            tables[schema.name] = schema.empty()
            continue
        tables[schema.name] = read_table(path, schema, today=today)
    promos = tables["promotions"]
    if promos.height:
        validate_references(promos, "sku_id", tables["products"], "sku_id", source=str(_find(directory, "promotions")), table="promotions", parent_table="products")
        bad = promos.with_row_index("row").filter(pl.col("end_date") < pl.col("start_date"))
        if bad.height:
            raise InputDataError(str(_find(directory, "promotions")), "promotions", "end_date", f"{bad.height} promotion(s) end before they start", bad)
    return tables


def load_store_sales(directory: str | Path, store_id: str, products: pl.DataFrame, today: date) -> pl.DataFrame:
    """The user's sales file, validated, reduced to one store."""
    directory = Path(directory)
    path = _find(directory, "sales")
    if path is None:
        raise InputDataError(str(directory), "sales", None, "no input file; expected sales.parquet or sales.csv")
    sales = read_table(path, SALES, today=today)
    validate_references(sales, "sku_id", products, "sku_id", source=str(path), table="sales", parent_table="products")
    return sales.filter(pl.col("store_id") == store_id)


def markdown() -> str:
    """The documentation of the forecast raw tables (docs/forecast_raw_tables.md)."""
    parts = [
        "# Forecast raw tables",
        "",
        "Bring your own data: put one `<table>.parquet` or `<table>.csv` per table below in a folder and run the "
        "`forecast/stores` assets (and their siblings) with run config `ops: {forecast_master_tables: {config: {source_dir: /path}}}`, "
        "then `forecast/sales` per store partition with `ops: {forecast__sales: {config: {source_dir: /path}}}`. "
        "`promotions`, `weather_forecasts` and `events` are optional: without them the features they feed are left out. "
        "Every file is validated before anything is written; a bad file stops the run with one error naming the file, "
        "the column and example rows, and the lake keeps its previous content. Set `LAKEHOUSE_FORECAST_STORES_FILE` to "
        "your stores file so the store partitions are yours.",
    ]
    for schema in RAW_TABLES:
        optional = " (optional)" if schema.name in OPTIONAL_TABLES else ""
        parts += ["", f"## {schema.name}{optional}", "", schema.description, "", schema.markdown().rstrip("\n")]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
