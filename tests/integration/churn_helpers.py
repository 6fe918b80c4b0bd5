"""A tiny churn world written as user files, and Dagster runs over it."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse.churn.world import WorldConfig, generate_world
from resources import SourcesResource
from tests.conftest import write_sources

TINY = WorldConfig(customers=300, years=1.2, seed=11)


def write_source(tables: dict[str, pl.DataFrame], directory: Path, fmt: str = "parquet") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.write_csv(directory / f"{name}.csv")
        else:
            df.write_parquet(directory / f"{name}.parquet")
    return directory


def tiny_world() -> dict[str, pl.DataFrame]:
    return generate_world(TINY)


def truncate(tables: dict[str, pl.DataFrame], cut: date) -> dict[str, pl.DataFrame]:
    """The world as it was known at the start of `cut`: later facts removed or not yet known."""
    before = lambda col: pl.col(col) < cut  # noqa: E731
    known_ts = lambda col: pl.when(pl.col(col) < pl.lit(cut).cast(pl.Datetime("us"))).then(pl.col(col))  # noqa: E731
    tickets = tables["support_tickets"].filter(pl.col("opened_at") < pl.lit(cut).cast(pl.Datetime("us")))
    return {
        "customers": tables["customers"].filter(before("signup_date")),
        "usage_daily": tables["usage_daily"].filter(before("activity_date")),
        "support_tickets": tickets.with_columns(
            csat=pl.when(pl.col("closed_at") < pl.lit(cut).cast(pl.Datetime("us"))).then(pl.col("csat")),
            closed_at=known_ts("closed_at"),
        ),
        "invoices": tables["invoices"]
        .filter(before("issue_date"))
        .with_columns(
            paid_date=pl.when(before("paid_date")).then(pl.col("paid_date")),
            disputed_at=pl.when(before("disputed_at")).then(pl.col("disputed_at")),
        ),
        "renewals": tables["renewals"].filter(before("renewal_date")),
    }


def mondays(start: date, end: date) -> list[str]:
    first = start + timedelta(days=(7 - start.weekday()) % 7)
    return [(first + timedelta(weeks=i)).isoformat() for i in range((end - first).days // 7 + 1)]


def run(instance, resources, selection, **kwargs) -> dg.ExecuteInProcessResult:
    from assets.churn import ASSETS, CHECKS

    assets = [*ASSETS, *CHECKS]
    return dg.materialize(assets, selection=selection, instance=instance, resources=resources, **kwargs)


def with_source(resources: dict, folder: Path) -> dict:
    """The resources with a sources file listing the churn case at `folder`."""
    path = write_sources(folder.parent / f"{folder.name}-sources.yaml", {"churn": {"folder": folder}})
    return {**resources, "sources": SourcesResource(path=str(path))}


def load_raw(
    instance, resources, source: Path, raise_on_error: bool = True, staging: bool = True
) -> dg.ExecuteInProcessResult:
    from assets.churn.features import churn_staging
    from assets.churn.raw import churn_raw

    return run(
        instance,
        with_source(resources, source),
        dg.AssetSelection.assets(churn_raw, *([churn_staging] if staging else [])),
        raise_on_error=raise_on_error,
    )


def build_features(instance, resources, first: str, last: str) -> None:
    run(
        instance,
        resources,
        "key:churn/churn_features",
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
