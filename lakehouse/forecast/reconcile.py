"""Hierarchical reconciliation with hierarchicalforecast: national -> the store levels -> store -> SKU.

The tree comes from the data: the levels are the stores table's columns named in
`hierarchy.store_levels` (the demo's `region`, the M5 kit's `state`), their members whatever
those columns hold. A node's id is its path (`total/CA/CA_1/FOODS_1_033`).

Every forecast is reconciled three ways, with the sparse methods (the chain's 1.2 M bottom series
need no dense summing matrix):
- bottom-up: each SKU keeps its model's forecast, every total is the sum of its parts;
- top-down with forecast proportions: the national base forecast split down the tree in the
  proportions of the base forecasts at each level;
- MinTrace (structural weights, non-negative): every level's base forecast counts, the least
  squares coherent compromise.
Which one a horizon uses (the operational one, the planning one) is chosen by the backtest
(`evaluation.reconciliation_choice`) and recorded on the model version; without a choice, bottom-up
for operations and top-down for planning (the seed's). Base forecasts of the aggregate nodes come
from MSTL on their own aggregated history.
"""

from __future__ import annotations

import warnings
from datetime import date

import polars as pl

from lakehouse.forecast.data import Periods, to_pandas
from lakehouse.forecast.settings import ForecastSettings

BOTTOM_UP, TOP_DOWN, MIN_TRACE = "bottom_up", "top_down", "min_trace"
METHODS = (BOTTOM_UP, TOP_DOWN, MIN_TRACE)
DEFAULTS = {"operational": BOTTOM_UP, "planning": TOP_DOWN}  # the seed's, until a backtest chooses


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


def _aggregate_model(periods: Periods, settings: ForecastSettings):
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, SeasonalNaive

    season = periods.cadence.season
    return StatsForecast(
        models=[MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))],
        freq=periods.alias,
        n_jobs=1,
        fallback_model=SeasonalNaive(season),
    )


def aggregate_base_forecasts(
    node_history: pl.DataFrame, labels: list, periods: Periods, settings: ForecastSettings
) -> pl.DataFrame:
    """node, ds, yhat: MSTL on each aggregate node's bounded window, over the forecast's periods (a trend
    extrapolated below zero over a long planning horizon is cut at zero: sales are not negative)."""
    window = node_history.group_by("node", maintain_order=True).tail(settings.stat_window_periods)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _aggregate_model(periods, settings).forecast(
            df=to_pandas(window.rename({"node": "unique_id"})), h=len(labels)
        )
    return (
        pl.from_pandas(out)
        .select(pl.col("unique_id").alias("node"), pl.col("ds").cast(pl.Date), pl.col("MSTL").clip(0.0).alias("yhat"))
        .filter(pl.col("ds").is_in(labels))
    )


def fit_aggregates(node_history: pl.DataFrame, periods: Periods, settings: ForecastSettings) -> dict[str, object]:
    """node -> MSTL fitted on the node's bounded window (the backtest's fitted state of the aggregates)."""
    window = node_history.group_by("node", maintain_order=True).tail(settings.stat_window_periods)
    sf = _aggregate_model(periods, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf.fit(to_pandas(window.rename({"node": "unique_id"})))
    return dict(zip(sf.uids, sf.fitted_[:, 0], strict=True))


def aggregate_forecasts_at(
    fitted: dict[str, object], node_history: pl.DataFrame, origin, horizon: int, periods: Periods, settings
) -> pl.DataFrame:
    """node, ds, yhat: each aggregate node's fitted model over its window up to `origin`, no refit."""
    window = (
        node_history.filter(pl.col("ds") <= origin)
        .group_by("node", maintain_order=True)
        .tail(settings.stat_window_periods)
    )
    labels = periods.following(origin, horizon)
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (node,), part in window.group_by(["node"], maintain_order=True):
            model = fitted.get(node)
            if model is None:
                continue
            mean = model.forward(y=part["y"].to_numpy().astype(float), h=horizon)["mean"]
            frames.append(pl.DataFrame({"node": node, "ds": labels, "yhat": [max(float(v), 0.0) for v in mean]}))
    schema = {"node": pl.String, "ds": pl.Date, "yhat": pl.Float64}
    return pl.concat(frames).cast(schema) if frames else pl.DataFrame(schema=schema)


def reconcile(
    base: pl.DataFrame, aggregate_base: pl.DataFrame, stores: pl.DataFrame, settings: ForecastSettings
) -> pl.DataFrame:
    """node, level, ds, base and one column per method (bottom_up, top_down, min_trace) for every node.

    `base`: store_id, sku_id, ds, yhat (the models' forecasts); `aggregate_base`: node, ds, yhat."""
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUpSparse, MinTraceSparse, TopDownSparse
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
    methods = [
        BottomUpSparse(),
        TopDownSparse(method="forecast_proportions"),
        MinTraceSparse(method="wls_struct", nonnegative=True, qp=False),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reconciled = HierarchicalReconciliation(methods).reconcile(Y_hat_df=y_hat, S_df=s_matrix, tags=tags)
    names = levels(settings)
    level_of = {uid: names[i] for i, key in enumerate(tags) for uid in tags[key]}
    prefix = {"base/BottomUp": BOTTOM_UP, "base/TopDown": TOP_DOWN, "base/MinTrace": MIN_TRACE}
    columns = {c: m for c in reconciled.columns for p, m in prefix.items() if c.startswith(p)}
    return (
        (pl.from_pandas(reconciled) if not isinstance(reconciled, pl.DataFrame) else reconciled)
        .rename({"unique_id": "node", **columns})
        .with_columns(pl.col("ds").cast(pl.Date), level=pl.col("node").replace_strict(level_of, return_dtype=pl.String))
        .with_columns([pl.col(m).clip(0.0) for m in METHODS])
        .select("node", "level", "ds", "base", *METHODS)
        .sort("level", "node", "ds")
    )


def choose(table: pl.DataFrame, method: str) -> pl.DataFrame:
    """The reconciled table with the method a horizon uses: `method`, and `reconciled`, its values."""
    return table.with_columns(method=pl.lit(method), reconciled=pl.col(method))


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


# --------------------------------------------------------------------------- choice by backtest


def reconciliation_backtest(
    rows: pl.DataFrame, data_sales: pl.DataFrame, stores: pl.DataFrame, fits: list, periods: Periods, settings
) -> pl.DataFrame:
    """method, level, wape, rows: the backtest's forecasts (`routed`, at each origin) reconciled every way, each
    level scored on actuals summed the same way. The tree is the backtested series' own (a sample's totals
    are the sample's); the aggregate nodes' models are fitted at the backtest's cut-offs (`fits`) and forecast
    each origin from that state."""
    schema = {"method": pl.String, "level": pl.String, "wape": pl.Float64, "rows": pl.UInt32}
    if rows.is_empty():
        return pl.DataFrame(schema=schema)
    ids = rows.select("store_id", "sku_id").unique()
    node_history = aggregate_history(data_sales.join(ids, on=["store_id", "sku_id"], how="semi"), stores, settings)
    fits = sorted(fits)
    aggregates = []
    for k, fit in enumerate(fits):
        state = fit_aggregates(node_history.filter(pl.col("ds") <= fit), periods, settings)
        until = fits[k + 1] if k + 1 < len(fits) else None
        for origin in sorted(o for o in rows["origin"].unique() if o >= fit and (until is None or o < until)):
            horizon = int(rows.filter(pl.col("origin") == origin)["step"].max())
            at = aggregate_forecasts_at(state, node_history, origin, horizon, periods, settings)
            aggregates.append(at.with_columns(origin=pl.lit(origin)))
    # Every (origin, period) pair becomes one column of the reconciliation: one call for every origin.
    pairs = rows.select("origin", "ds").unique().sort("origin", "ds").with_row_index("k")
    synthetic = pl.lit(date(2000, 1, 1)) + pl.duration(days=pl.col("k"))
    base = rows.join(pairs, on=["origin", "ds"]).select("store_id", "sku_id", synthetic.alias("ds"), yhat="routed")
    aggregate_base = (
        pl.concat(aggregates).join(pairs, on=["origin", "ds"]).select("node", synthetic.alias("ds"), "yhat")
    )
    table = reconcile(base, aggregate_base, stores, settings).rename({"ds": "synthetic"})
    table = table.join(pairs.select(synthetic.alias("synthetic"), "origin", "ds"), on="synthetic").drop("synthetic")
    bottom = bottom_nodes(rows.select("store_id", "sku_id", "ds", "actual"), stores, settings).select(
        "node", "ds", pl.col("actual").alias("y")
    )
    actual = pl.concat([bottom.unique(["node", "ds"]), node_history], how="vertical_relaxed")
    scored = table.join(actual, on=["node", "ds"])
    return (
        pl.concat(
            [
                scored.group_by("level").agg(
                    method=pl.lit(m),
                    wape=(pl.col(m) - pl.col("y")).abs().sum() / pl.col("y").abs().sum(),
                    rows=pl.len(),
                )
                for m in METHODS
            ]
        )
        .select(*schema)
        .cast(schema)
        .sort("method", "level")
    )


def best_method(scores: pl.DataFrame, default: str) -> str:
    """The method with the lowest WAPE averaged over the levels (each level counts once); `default` on a tie or
    without scores."""
    if scores.is_empty():
        return default
    means = dict(scores.group_by("method").agg(pl.col("wape").mean()).iter_rows())
    best = min(means.values())
    return default if means.get(default) is not None and means[default] <= best + 1e-12 else min(means, key=means.get)
