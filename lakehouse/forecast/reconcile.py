"""Hierarchical reconciliation, national -> region -> store -> SKU, with hierarchicalforecast.

Bottom-up gives the operational forecast (each store x SKU keeps its own model's forecast;
every total is the sum of its parts). Top-down with forecast proportions gives the strategic
one: the national base forecast is split down the tree in the proportions of the base
forecasts at each level. Base forecasts of the aggregate levels come from MSTL on the
aggregated sales history.
"""

from __future__ import annotations

import warnings

import pandas as pd
import polars as pl

from lakehouse.forecast.config import Frequency

LEVELS = ("national", "region", "store", "sku")
SPEC = [["national"], ["national", "region"], ["national", "region", "store_id"], ["national", "region", "store_id", "sku_id"]]


def _ids(df: pl.DataFrame) -> pl.DataFrame:
    """hierarchicalforecast's unique_id per level: national, national/region, .../store, .../sku."""
    return df.with_columns(national=pl.lit("total"))


def hierarchy(base: pl.DataFrame, stores: pl.DataFrame):
    """S matrix and tags for the bottom series of `base` (store_id, sku_id)."""
    from hierarchicalforecast.utils import aggregate

    bottom = _ids(base.select("store_id", "sku_id").unique().join(stores.select("store_id", "region"), on="store_id"))
    frame = bottom.with_columns(ds=pl.lit(0), y=pl.lit(0.0)).to_pandas()
    _, s_df, tags = aggregate(frame, SPEC)
    return s_df, tags


def aggregate_base_forecasts(history: pl.DataFrame, freq: Frequency, horizon_ds: list) -> pl.DataFrame:
    """Base forecasts of the aggregate series (total, regions, stores) from their own history."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    window = history.group_by("unique_id", maintain_order=True).tail(freq.stat_window)
    sf = StatsForecast(models=[MSTL(season_length=[freq.season], trend_forecaster=AutoETS(model="ZZN"))], freq=freq.alias, n_jobs=1)
    pdf = window.to_pandas()
    pdf["ds"] = pd.to_datetime(pdf["ds"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = sf.forecast(df=pdf, h=len(horizon_ds))
    out = pl.from_pandas(out).rename({"MSTL": "yhat"}).with_columns(pl.col("ds").cast(pl.Date))
    return out.select("unique_id", "ds", "yhat")


def aggregate_history(store_totals: pl.DataFrame, stores: pl.DataFrame) -> pl.DataFrame:
    """unique_id, ds, y for the national, regional and store totals (from per-store daily totals)."""
    t = store_totals.join(stores.select("store_id", "region"), on="store_id")
    national = t.group_by("ds").agg(pl.col("y").sum()).with_columns(unique_id=pl.lit("total"))
    region = t.group_by("region", "ds").agg(pl.col("y").sum()).with_columns(unique_id=pl.lit("total/") + pl.col("region"))
    store = t.with_columns(unique_id=pl.lit("total/") + pl.col("region") + "/" + pl.col("store_id"))
    cols = ["unique_id", "ds", "y"]
    return pl.concat([national.select(cols), region.select(cols), store.select(cols)]).sort("unique_id", "ds")


def reconcile(base: pl.DataFrame, aggregate_base: pl.DataFrame, stores: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """BottomUp (operational) and TopDown forecast_proportions (strategic), every level."""
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUp, TopDown

    s_df, tags = hierarchy(base, stores)
    bottom = _ids(base.join(stores.select("store_id", "region"), on="store_id")).with_columns(
        unique_id=pl.lit("total/") + pl.col("region") + "/" + pl.col("store_id") + "/" + pl.col("sku_id")
    )
    y_hat = pl.concat([bottom.select("unique_id", "ds", "yhat"), aggregate_base.select("unique_id", "ds", "yhat")]).rename({"yhat": "base"})
    y_hat_pd = y_hat.to_pandas()
    y_hat_pd["ds"] = pd.to_datetime(y_hat_pd["ds"])
    order = {uid: i for i, uid in enumerate(s_df["unique_id"])}
    y_hat_pd = y_hat_pd.assign(_o=y_hat_pd["unique_id"].map(order)).sort_values(["_o", "ds"]).drop(columns="_o")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = HierarchicalReconciliation([BottomUp(), TopDown(method="forecast_proportions")]).reconcile(Y_hat_df=y_hat_pd, S_df=s_df, tags=tags)
    rec = pl.from_pandas(rec).with_columns(pl.col("ds").cast(pl.Date))
    level_of = {uid: level for level, key in zip(LEVELS, tags) for uid in tags[key]}
    rec = rec.with_columns(level=pl.col("unique_id").replace_strict(level_of), origin=pl.lit(base["origin"].max()))
    columns = {"base/BottomUp": "yhat", "base/TopDown_method-forecast_proportions": "yhat"}
    out = {}
    for name, column in (("operational", "base/BottomUp"), ("strategic", "base/TopDown_method-forecast_proportions")):
        out[name] = rec.select("unique_id", "level", "origin", "ds", pl.col(column).alias(columns[column])).sort("level", "unique_id", "ds")
    out["operational"] = out["operational"].join(rec.select("unique_id", "ds", "base"), on=["unique_id", "ds"])
    return out


def coherence(reconciled: pl.DataFrame) -> dict:
    """Largest relative gap between a parent and the sum of its children, and negative values."""
    df = reconciled.with_columns(parent=pl.col("unique_id").str.replace(r"/[^/]+$", ""))
    children = df.filter(pl.col("level") != LEVELS[0]).group_by("parent", "ds").agg(children=pl.col("yhat").sum())
    joined = df.select("unique_id", "ds", "yhat").join(children, left_on=["unique_id", "ds"], right_on=["parent", "ds"])
    gap = (joined["yhat"] - joined["children"]).abs() / joined["yhat"].abs().clip(1e-9)
    return {
        "max_relative_gap": float(gap.max()) if len(gap) else 0.0,
        "parents_checked": int(joined["unique_id"].n_unique()),
        "negative_values": int((df["yhat"] < -1e-9).sum()),
        "min_value": float(df["yhat"].min()) if df.height else 0.0,
    }


