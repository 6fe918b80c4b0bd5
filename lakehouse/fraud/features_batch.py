"""Batch execution of the feature registry: every feature of every transaction, point in time,
with Polars rolling windows over the whole history (training, evaluation, batch scoring).
The semantics are the registry's (`features_registry`); `features_online` computes the same
values from the Redis store, and a parity test holds the two together."""

from __future__ import annotations

import polars as pl

from lakehouse.fraud.features_registry import (
    DAY_MS,
    ENTITIES,
    HISTORY_ENTITIES,
    MAX_GAP_S,
    HistoryFeature,
    Registry,
    WindowFeature,
)


def _entity_expr(entity: str, registry: Registry) -> pl.Expr:
    value = pl.col(ENTITIES[entity])
    return (
        pl.when(pl.col("channel").is_in(list(registry.transfer_channels))).then(value).otherwise(None)
        if entity == "iban"
        else value
    )


def _aggregate_expr(f: WindowFeature, small: float) -> pl.Expr:
    amount = pl.col("amount")
    expr = {
        "count": pl.len().cast(pl.Float64),
        "sum": amount.sum(),
        "max": amount.max(),
        "mean": amount.mean(),
        "small": (amount < small).sum().cast(pl.Float64),
    }.get(f.aggregate)
    if expr is None:
        expr = pl.col(f.of).drop_nulls().n_unique().cast(pl.Float64)
    return expr.alias(f.name)


def batch_features(tx: pl.DataFrame, registry: Registry) -> pl.DataFrame:
    """Point-in-time features of every transaction: tx_id, ts, day, is_fraud (and fraud_pattern
    when present), then the features."""
    names = set(registry.available(tx.columns))
    base = (
        tx.with_columns(ts_ms=pl.col("ts").dt.epoch("ms"))
        .with_columns(_day=pl.col("ts_ms") // DAY_MS)
        .sort("ts_ms", "tx_id")
    )
    out = _row_features(base, names, registry)
    for entity in ENTITIES:
        features = [f for f in registry.windows if f.entity == entity and f.name in names]
        if not features:
            continue
        part = (
            base.with_columns(_key=_entity_expr(entity, registry))
            .filter(pl.col("_key").is_not_null())
            .sort("_key", "ts_ms", "tx_id")
        )
        entity_out = part.select("tx_id", "_key", "ts_ms")
        for window in sorted({f.window_ms for f in features}):
            aggs = [_aggregate_expr(f, registry.settings.small_amount) for f in features if f.window_ms == window]
            rolled = part.rolling(index_column="ts_ms", period=f"{window}i", closed="left", group_by="_key").agg(aggs)
            # A window [t - w, t) depends only on (entity, t): rows that tie share their values.
            entity_out = entity_out.join(rolled.unique(["_key", "ts_ms"]), on=["_key", "ts_ms"], how="left")
        out = out.join(entity_out.drop("_key", "ts_ms"), on="tx_id", how="left")
    for entity, column in HISTORY_ENTITIES.items():
        features = [f for f in registry.history if f.entity == entity and f.name in names]
        if features:
            out = out.join(_history_features(base, column, features, registry.label_delay), on="tx_id", how="left")
    out = out.with_columns(
        pl.when(pl.col(f.mean).fill_null(0.0) > 0).then(pl.col("amount") / pl.col(f.mean)).otherwise(1.0).alias(f.name)
        for f in registry.ratios
        if f.name in names and f.mean in out.columns
    )
    feature_cols = [n for n in registry.names if n in out.columns and n in names]
    keep = [
        c
        for c in ("tx_id", "ts", "customer_id", "merchant_id", "channel", "is_fraud", "fraud_pattern")
        if c in base.columns
    ]
    defaults = registry.defaults
    return (
        base.select(*keep, day=pl.col("ts").dt.date())
        .join(out, on="tx_id", how="left", suffix="_f")
        .select(
            *keep,
            "day",
            *(pl.col(n).cast(pl.Float64).fill_null(defaults[n]).fill_nan(defaults[n]).alias(n) for n in feature_cols),
        )
    )


def _history_features(base: pl.DataFrame, column: str, features: list[HistoryFeature], delay: int) -> pl.DataFrame:
    """Whole-day windows of a merchant or category: activity over the n days before the
    payment's day, fraud over the n days ending `delay` days before it."""
    fraud = pl.col("is_fraud").cast(pl.Float64) if "is_fraud" in base.columns else pl.lit(0.0)
    daily = (
        base.filter(pl.col(column).is_not_null())
        .group_by(column, "_day")
        .agg(
            count=pl.len().cast(pl.Float64),
            cents=(pl.col("amount") * 100).round().cast(pl.Int64).sum(),
            frauds=fraud.sum(),
        )
        .sort(column, "_day")
    )
    result = daily.select(column, "_day")
    for days in sorted({f.days for f in features}):
        for delayed in (False, True):
            offset = days + (delay if delayed else 0)
            aggs = [
                pl.col("count").sum().alias("c"),
                (pl.col("frauds") if delayed else pl.col("cents")).sum().alias("v"),
            ]
            rolled = daily.rolling(
                index_column="_day", period=f"{days}i", offset=f"-{offset}i", closed="left", group_by=column
            ).agg(aggs)
            by = {f.aggregate: f.name for f in features if f.days == days and f.delayed == delayed}
            exprs = {
                "count": pl.col("c"),
                "mean": pl.when(pl.col("c") > 0).then(pl.col("v") / 100 / pl.col("c")).otherwise(0.0),
                "frauds": pl.col("v"),
                "fraud_rate": pl.when(pl.col("c") > 0).then(pl.col("v") / pl.col("c")).otherwise(0.0),
            }
            if by:
                result = result.join(
                    rolled.select(column, "_day", *(exprs[a].alias(n) for a, n in by.items())),
                    on=[column, "_day"],
                    how="left",
                )
    return base.select("tx_id", column, "_day").join(result, on=[column, "_day"], how="left").drop(column, "_day")


def _haversine_expr(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    p1, p2 = lat1.radians(), lat2.radians()
    dp, dl = p2 - p1, (lon2 - lon1).radians()
    a = (dp / 2).sin() ** 2 + p1.cos() * p2.cos() * (dl / 2).sin() ** 2
    return 2 * 6371.0 * a.sqrt().arcsin()


def _row_features(base: pl.DataFrame, names: set[str], registry: Registry) -> pl.DataFrame:
    amount = pl.col("amount")
    c = "customer_id"
    df = base.sort(c, "ts_ms", "tx_id").with_columns(
        n=pl.int_range(pl.len()).over(c).cast(pl.Float64),
        s=(amount.cum_sum() - amount).over(c),
        ss=((amount * amount).cum_sum() - amount * amount).over(c),
        prev_ts=pl.col("ts_ms").shift(1).over(c),
        local=pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone(registry.timezone),
    )
    mean = pl.when(pl.col("n") > 0).then(pl.col("s") / pl.col("n")).otherwise(0.0)
    var = (pl.col("ss") / pl.col("n") - (pl.col("s") / pl.col("n")) ** 2).clip(0.0, None)
    std = pl.when(pl.col("n") >= 2).then(var.sqrt()).otherwise(0.0)
    df = df.with_columns(cust_mean_amount=mean, cust_std_amount=std)
    exprs = {
        "amount": amount,
        "log_amount": amount.log1p(),
        "hour": pl.col("local").dt.hour(),
        "weekday": pl.col("local").dt.weekday(),
        "is_ecommerce": pl.col("channel").is_in(list(registry.ecommerce_channels)),
        "is_transfer": pl.col("channel").is_in(list(registry.transfer_channels)),
        "is_small": amount < registry.settings.small_amount,
        "cust_tx_before": pl.col("n"),
        "cust_mean_amount": pl.col("cust_mean_amount"),
        "cust_std_amount": pl.col("cust_std_amount"),
        "amount_z": pl.when(pl.col("n") >= 2)
        .then((amount - pl.col("cust_mean_amount")) / pl.col("cust_std_amount").clip(1.0, None))
        .otherwise(0.0),
        "amount_ratio_mean": pl.when(pl.col("n") >= 1).then(amount / pl.col("cust_mean_amount")).otherwise(1.0),
        "secs_since_prev": ((pl.col("ts_ms") - pl.col("prev_ts")) / 1000.0).clip(None, MAX_GAP_S).fill_null(MAX_GAP_S),
    }
    for feature, column in (("has_device", "device_id"), ("has_ip", "ip")):
        if feature in names:
            exprs[feature] = pl.col(column).is_not_null()
    for feature, column in (("new_device", "device_id"), ("new_ip", "ip"), ("new_country", "country")):
        if feature in names:
            first = pl.col("ts_ms").min().over(c, column)
            exprs[feature] = pl.col(column).is_not_null() & (first >= pl.col("ts_ms"))
    if "home_dist_km" in names:
        exprs["home_dist_km"] = _haversine_expr(
            pl.col("customer_lat"), pl.col("customer_lon"), pl.col("lat"), pl.col("lon")
        ).fill_null(0.0)
    if "dist_prev_km" in names:
        located = pl.col("lat").is_not_null() & pl.col("lon").is_not_null()
        df = df.with_columns(
            plat=pl.col("lat").shift(1).forward_fill().over(c),
            plon=pl.col("lon").shift(1).forward_fill().over(c),
            pts=pl.when(located).then(pl.col("ts_ms")).otherwise(None).shift(1).forward_fill().over(c),
        )
        dist = (
            pl.when(located & pl.col("pts").is_not_null())
            .then(_haversine_expr(pl.col("plat"), pl.col("plon"), pl.col("lat"), pl.col("lon")))
            .otherwise(0.0)
        )
        hours = ((pl.col("ts_ms") - pl.col("pts")) / 3.6e6).clip(1 / 60, None)
        exprs["dist_prev_km"] = dist
        exprs["speed_kmh"] = pl.when(located & pl.col("pts").is_not_null()).then(dist / hours).otherwise(0.0)
    return df.select("tx_id", *(e.cast(pl.Float64).alias(n) for n, e in exprs.items() if n in names))
