"""One static partition per store, keyed `<region>-s<number>` (e.g. north-s001).

The keys come from the configured world (LAKEHOUSE_FORECAST_SCALE), or from the user's stores
file when LAKEHOUSE_FORECAST_STORES_FILE points at one (Parquet or CSV with a store_id column).
"""

import os

import dagster as dg
import polars as pl

from lakehouse.forecast.config import WorldConfig, store_keys


def configured_store_keys() -> list[str]:
    path = os.environ.get("LAKEHOUSE_FORECAST_STORES_FILE")
    if path:
        frame = pl.read_csv(path) if path.endswith(".csv") else pl.read_parquet(path)
        return sorted(frame["store_id"].cast(pl.String).to_list())
    return store_keys(WorldConfig.from_env())


store_partitions = dg.StaticPartitionsDefinition(configured_store_keys())
