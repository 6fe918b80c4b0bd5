"""Reading and writing the case's lake files (the asset modules' shared plumbing)."""

import os
import pickle
import uuid
from datetime import date
from pathlib import Path

import polars as pl

from lakehouse.forecast.config import CASE
from lakehouse.forecast.features import StoreData
from resources import LakehouseResource

MASTER = ("stores", "products", "promotions", "weather_forecasts", "events")


def master_tables(lakehouse: LakehouseResource) -> dict[str, pl.DataFrame]:
    return {name: lakehouse.lake.read(CASE, name) for name in MASTER}


def store_data(lakehouse: LakehouseResource, store_id: str, tables: dict | None = None) -> StoreData:
    tables = tables or master_tables(lakehouse)
    store = tables["stores"].filter(pl.col("store_id") == store_id)
    if store.is_empty():
        raise ValueError(f"store {store_id!r} is not in the stores table")
    sales = lakehouse.lake.read(CASE, "sales", ("store", store_id))
    return StoreData(store.row(0, named=True), tables["products"], sales, tables["promotions"], tables["weather_forecasts"], tables["events"])


def model_path(lakehouse: LakehouseResource, name: str, store_id: str | None = None) -> Path:
    folder = Path(lakehouse.lake.table_url(CASE, name))
    if store_id is not None:
        folder = folder / f"store={store_id}"
    return folder / "models.pkl"


def save_pickle(obj, path: Path) -> Path:
    """Atomic like the lake's Parquet writes: a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(pickle.dumps(obj))
    os.replace(tmp, path)
    return path


def load_pickle(path: Path):
    return pickle.loads(Path(path).read_bytes())


def forecast_table(origin: date) -> str:
    """Nightly forecasts are kept per origin: <lake>/forecast/store_forecasts/origin=<d>/store=<s>/."""
    return f"store_forecasts/origin={origin.isoformat()}"


def forecast_glob(lakehouse: LakehouseResource) -> str:
    return f"{lakehouse.lake.table_url(CASE, 'store_forecasts')}/origin=*/store=*/data.parquet"


def all_forecasts(lakehouse: LakehouseResource) -> pl.DataFrame:
    return pl.read_parquet(forecast_glob(lakehouse), hive_partitioning=False)


def all_sales(lakehouse: LakehouseResource) -> pl.LazyFrame:
    return pl.scan_parquet(lakehouse.lake.glob(CASE, "sales", partitioned=True), hive_partitioning=False)
