"""Reading the case's day-partitioned lake tables."""

from __future__ import annotations

import glob
from pathlib import Path

import polars as pl

from lakehouse.common.lake import Lake
from lakehouse.fraud.config import CASE


def partition_days(lake: Lake, name: str) -> list[str]:
    root = Path(lake.table_url(CASE, name))
    return sorted(p.name.removeprefix("day=") for p in root.glob("day=*") if any(p.glob("*.parquet")))


def read_days(lake: Lake, name: str, days: list[str] | None = None) -> pl.DataFrame:
    """Every file of the chosen day partitions (all by default), columns unioned."""
    root = lake.table_url(CASE, name)
    files = sorted(f for d in (days or partition_days(lake, name)) for f in glob.glob(f"{root}/day={d}/*.parquet"))
    if not files:
        raise FileNotFoundError(f"no partition of {CASE}/{name} under {root}: materialize it first")
    return pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal_relaxed")
