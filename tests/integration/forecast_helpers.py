"""A user's forecasting files written from the synthetic chain, and materializing the case's assets."""

from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from lakehouse.common.sources import SOURCES_ENV
from lakehouse.forecast import world as gen

MASTER = " or ".join(f"key:forecast/{name}" for name in ("stores", "products", "promotions", "events", "covariates"))


def write_source(
    folder: Path, world: gen.WorldConfig, monkeypatch, settings: dict | None = None, weekly: bool = False
) -> Path:
    """The chain's tables as CSV files in `folder`, and a sources file naming them (set as LAKEHOUSE_SOURCES).
    `weekly`: sales summed into weeks ending on Sunday, as a weekly user file would come."""
    folder.mkdir(parents=True)
    tables = gen.master_tables(world)
    for name, frame in tables.items():
        frame.write_csv(folder / f"{name}.csv")
    sales = pl.concat([gen.store_sales(world, tables, s) for s in tables["stores"]["store_id"]])
    if weekly:
        sunday = pl.col("date") + pl.duration(days=(7 - pl.col("date").dt.weekday()) % 7)
        sales = (
            sales.with_columns(date=sunday)
            .group_by("store_id", "sku_id", "date")
            .agg(pl.col("units").sum())
            .sort("store_id", "sku_id", "date")
        )
        sales = sales.filter(pl.col("date") <= world.last_day)
    sales.write_csv(folder / "sales.csv")
    path = folder.parent / "sources.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "forecast": {
                    "folder": folder.name,
                    "settings": {"calendar": {"start": str(world.start_date)}, **(settings or {})},
                }
            }
        )
    )
    monkeypatch.setenv(SOURCES_ENV, str(path))
    return folder


def materialize(home: Path, selection: str, **kwargs) -> dg.ExecuteInProcessResult:
    """The case's assets with the default resources (the sources file from the environment)."""
    from assets.forecast import ASSETS, CHECKS
    from resources import LakehouseResource, default_resources

    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home))}
    return dg.materialize([*ASSETS, *CHECKS], selection=selection, resources=resources, raise_on_error=False, **kwargs)


def store_keys(instance: dg.DagsterInstance) -> list[str]:
    from assets.forecast.partitions import every_store

    return sorted(every_store(instance))
