"""Hierarchical reconciliation with hierarchicalforecast: national -> the store levels -> store -> SKU.

The tree comes from the data: the levels are the stores table's columns named in
`hierarchy.store_levels` (the demo's `region`, the M5 kit's `state`), their members whatever
those columns hold. A node's id is its path (`total/CA/CA_1/FOODS_1_033`).

Every forecast is reconciled two ways, with the sparse methods (the chain's 1.2 M bottom series
need no dense summing matrix):
- bottom-up (the seed's operational forecast): each SKU keeps its model's forecast, every total
  is the sum of its parts;
- top-down with forecast proportions (the seed's planning forecast): the national base forecast
  split down the tree in the proportions of the base forecasts at each level.
Base forecasts of the aggregate nodes come from MSTL on their own aggregated history.
"""

from __future__ import annotations

import warnings

import polars as pl

from lakehouse.forecast.features import Periods, to_pandas
from lakehouse.forecast.settings import ForecastSettings

BOTTOM_UP, TOP_DOWN = "bottom_up", "top_down"


def levels(settings: ForecastSettings) -> list[str]:
    """Level names from the top: national, the store levels, store, sku."""
    return ["national", *settings.hierarchy.store_levels, "store", "sku"]


def node_paths(stores: pl.DataFrame, settings: ForecastSettings) -> pl.DataFrame:
    """store_id -> the path of the store node (total/<level values>/<store>)."""
    h = settings.hierarchy
    parts = [pl.lit(h.national), *[pl.col(c) for c in h.store_levels], pl.col("store_id")]
    return stores.select("store_id", *h.store_levels, path=pl.concat_str(parts, separator="/"))


def bottom_nodes(frame: pl.DataFrame, stores: pl.DataFrame, settings: ForecastSettings) -> pl.DataFrame:
    """`frame` (store_id, sku_id, ...) with `node`, the SKU node's path."""
    return (
        frame.join(node_paths(stores, settings), on="store_id")
        .with_columns(node=pl.concat_str([pl.col("path"), pl.lit("/"), pl.col("sku_id")]))
        .drop("path")
    )


def aggregate_history(sales: pl.DataFrame, stores: pl.DataFrame, settings: ForecastSettings) -> pl.DataFrame:
    """node, ds, y of every aggregate node (national, each level member, each store)."""
    h = settings.hierarchy
    totals = (
        sales.group_by("store_id", "date")
        .agg(pl.col("units").sum().cast(pl.Float64).alias("y"))
        .join(node_paths(stores, settings), on="store_id")
    )
    frames = []
    for depth in range(len(h.store_levels) + 2):
        node = pl.col("path").str.split("/").list.head(depth + 1).list.join("/")
        frames.append(totals.group_by(node.alias("node"), pl.col("date").alias("ds")).agg(pl.col("y").sum()))
    return pl.concat(frames).sort("node", "ds")


def aggregate_base_forecasts(
    node_history: pl.DataFrame, labels: list, periods: Periods, settings: ForecastSettings
) -> pl.DataFrame:
    """node, ds, yhat: MSTL on each aggregate node's bounded window, over the forecast's periods (a trend
    extrapolated below zero over a long planning horizon is cut at zero: sales are not negative)."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, SeasonalNaive

    season = periods.cadence.season
    window = node_history.group_by("node", maintain_order=True).tail(settings.stat_window_periods)
    sf = StatsForecast(
        models=[MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))],
        freq=periods.alias,
        n_jobs=1,
        fallback_model=SeasonalNaive(season),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = sf.forecast(df=to_pandas(window.rename({"node": "unique_id"})), h=len(labels))
    return (
        pl.from_pandas(out)
        .select(pl.col("unique_id").alias("node"), pl.col("ds").cast(pl.Date), pl.col("MSTL").clip(0.0).alias("yhat"))
        .filter(pl.col("ds").is_in(labels))
    )


def reconcile(
    base: pl.DataFrame, aggregate_base: pl.DataFrame, stores: pl.DataFrame, settings: ForecastSettings
) -> pl.DataFrame:
    """node, level, ds, base, bottom_up, top_down for every node of the tree.

    `base`: store_id, sku_id, ds, yhat (the models' forecasts); `aggregate_base`: node, ds, yhat."""
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUpSparse, TopDownSparse
    from hierarchicalforecast.utils import aggregate

    h = settings.hierarchy
    bottom = bottom_nodes(base, stores, settings)
    spec_columns = ["national", *h.store_levels, "store_id", "sku_id"]
    frame = bottom.select(*[c for c in spec_columns if c != "national"], "ds").with_columns(
        national=pl.lit(h.national), y=pl.lit(0.0)
    )
    spec = [spec_columns[: depth + 1] for depth in range(len(spec_columns))]
    _, s_matrix, tags = aggregate(frame.select(*spec_columns, "ds", "y").unique(), spec, sparse_s=True)
    y_hat = pl.concat(
        [
            bottom.select(pl.col("node").alias("unique_id"), "ds", "yhat"),
            aggregate_base.select(pl.col("node").alias("unique_id"), "ds", "yhat"),
        ]
    )
    y_hat = y_hat.rename({"yhat": "base"}).with_columns(pl.col("ds").cast(pl.Datetime("us"))).sort("unique_id", "ds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reconciled = HierarchicalReconciliation(
            [BottomUpSparse(), TopDownSparse(method="forecast_proportions")]
        ).reconcile(Y_hat_df=y_hat, S_df=s_matrix, tags=tags)
    names = levels(settings)
    level_of = {uid: names[i] for i, key in enumerate(tags) for uid in tags[key]}
    columns = {
        c: BOTTOM_UP if c.startswith("base/BottomUp") else TOP_DOWN for c in reconciled.columns if c.startswith("base/")
    }
    return (
        (pl.from_pandas(reconciled) if not isinstance(reconciled, pl.DataFrame) else reconciled)
        .rename({"unique_id": "node", **columns})
        .with_columns(pl.col("ds").cast(pl.Date), level=pl.col("node").replace_strict(level_of, return_dtype=pl.String))
        .select("node", "level", "ds", "base", BOTTOM_UP, TOP_DOWN)
        .sort("level", "node", "ds")
    )


def coherence(reconciled: pl.DataFrame, column: str) -> dict:
    """Largest relative gap between a parent and the sum of its children, and negative values."""
    df = reconciled.with_columns(parent=pl.col("node").str.replace(r"/[^/]+$", ""))
    children = df.filter(pl.col("node").str.contains("/")).group_by("parent", "ds").agg(children=pl.col(column).sum())
    joined = df.select("node", "ds", column).join(children, left_on=["node", "ds"], right_on=["parent", "ds"])
    gap = (joined[column] - joined["children"]).abs() / joined[column].abs().clip(1e-9)
    return {
        "max_relative_gap": float(gap.max()) if len(gap) else 0.0,
        "parents_checked": int(joined["node"].n_unique()),
        "negative_values": int((df[column] < -1e-9).sum()),
    }
