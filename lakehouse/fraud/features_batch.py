"""Batch execution of the feature registry: every feature of every transaction, point in time,
with Polars rolling windows (training, evaluation, batch scoring). The semantics are the registry's
(`features_registry`); `features_online` computes the same values from the Redis store, and a parity
test holds the two together.

A day at a time: `batch_features(day, registry, before=<the earlier transactions, lazily>)` gives a day's
payments the features they have in the whole history while holding only that day in memory. Of the earlier
transactions it reads, through filters and aggregates that Polars streams from the files:

* the raw rows each window reaches into before the day (the day before it for the windows of up to a day; for
  a longer window, the one day at its far edge, whose rows leave the window during the day);
* per-entity totals of the rest of a longer window (payments, sum, max, small payments, distinct values), which
  every payment of the day has whole in its window;
* the customer's profile (payments, sums of amounts and squares, last payment, last located payment) and the
  devices, IPs and countries the day's customers used before;
* the merchants' and categories' daily totals over the history days.

Counts, maxima, distinct counts and the profile's flags are the same numbers as over the whole history; sums
and means are the same up to the order of floating-point additions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

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

STREAMING = "streaming"
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class _Past:
    """The transactions before the target rows (`before`, lazily), and the span of the target rows: their first
    time `start` and one past their last, `end` (ms)."""

    before: pl.LazyFrame
    start: int
    end: int

    def collect(self, query: pl.LazyFrame) -> pl.DataFrame:
        return query.collect(engine=STREAMING)

    def between(self, lo: int | None, hi: int) -> pl.LazyFrame:
        """The earlier rows with lo <= ts < min(hi, start), with `ts_ms`. The bounds compare `ts` itself with
        literals, so that a scan reads only the files and row groups whose statistics reach into them."""
        ts = pl.col("ts")
        keep = ts < self._at(min(hi, self.start))
        if lo is not None:
            keep = keep & (ts >= self._at(lo))
        return self.before.filter(keep).with_columns(ts_ms=ts.dt.epoch("ms"))

    def narrowed(self, rows: pl.LazyFrame) -> _Past:
        """The same span over these earlier rows, read once into memory (a sample's few entities)."""
        return _Past(self.collect(rows.drop("ts_ms")).lazy(), self.start, self.end)

    @property
    def rows(self) -> pl.LazyFrame:
        return self.between(None, self.start)

    def _at(self, ms: int) -> pl.Expr:
        at = pl.lit(EPOCH + timedelta(milliseconds=ms), dtype=pl.Datetime("ms"))
        zone = getattr(self.before.collect_schema()["ts"], "time_zone", None)
        return at.dt.replace_time_zone("UTC").dt.convert_time_zone(zone) if zone else at


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


def batch_features(
    tx: pl.DataFrame,
    registry: Registry,
    before: pl.LazyFrame | None = None,
    *,
    targets: pl.Series | None = None,
    names: Iterable[str] | None = None,
) -> pl.DataFrame:
    """Point-in-time features of every transaction: tx_id, ts, day, is_fraud (and fraud_pattern
    when present), then the features.

    `before`: the transactions before these (the same columns, every row earlier than the first of `tx`; a
    later one is ignored), e.g. a scan of the earlier days' files. The features are then those `tx`'s rows
    have in `before` and `tx` together, computed from `tx` and compact summaries of `before` (see the
    module's docstring).

    `targets`: the ids of the transactions whose features are wanted (a training sample); the other rows of
    `tx` are their context, read only where they share a customer or a window's entity with a target.
    `names`: the features wanted (all that the columns allow by default)."""
    available = set(registry.available(tx.columns))
    wanted = available if names is None else available & set(names)
    ratios = [f for f in registry.ratios if f.name in wanted]
    names = wanted | ({"amount", *(f.mean for f in ratios)} & available if ratios else set())
    base = (
        tx.with_columns(ts_ms=pl.col("ts").dt.epoch("ms"))
        .with_columns(_day=pl.col("ts_ms") // DAY_MS)
        .sort("ts_ms", "tx_id")
        .with_row_index("_i")
        .with_columns(_t=pl.lit(True) if targets is None else pl.col("tx_id").is_in(targets.implode()))
    )
    past = None
    if before is not None and base.height:
        past = _Past(before, int(base["ts_ms"].min()), int(base["ts_ms"].max()) + 1)
    customer_past = _customers_past(base, past) if targets is not None else None
    defaults = registry.defaults

    def finished(block: pl.DataFrame) -> pl.DataFrame:
        """Defaults in place as each block comes, so that its raw columns are freed before the next one."""
        return block.select(
            pl.col(n).cast(pl.Float64).fill_null(defaults[n]).fill_nan(defaults[n]) for n in block.columns
        )

    blocks = []
    if names & {f.name for f in registry.rows}:
        blocks.append(finished(_row_features(base, names, registry, past, customer_past)))
    for entity in ENTITIES:
        features = [f for f in registry.windows if f.entity == entity and f.name in names]
        if features:
            narrowed = customer_past if entity == "customer" else None
            blocks.append(finished(_window_features(base, entity, features, registry, past, narrowed)))
    for entity, column in HISTORY_ENTITIES.items():
        features = [f for f in registry.history if f.entity == entity and f.name in names]
        if features:
            blocks.append(finished(_history_features(base, column, features, registry, past)))
    out = pl.concat(blocks, how="horizontal") if blocks else pl.DataFrame()
    del blocks
    ratio_values = out.select(  # the means have their default (0) in place: no mean gives 1
        pl.when(pl.col(f.mean) > 0).then(pl.col("amount") / pl.col(f.mean)).otherwise(1.0).alias(f.name)
        for f in ratios
        if f.mean in out.columns
    )
    out = out.with_columns(finished(ratio_values).get_columns())
    feature_cols = [n for n in registry.names if n in out.columns and n in wanted]
    keep = [
        c
        for c in ("tx_id", "ts", "customer_id", "merchant_id", "channel", "is_fraud", "fraud_pattern")
        if c in base.columns
    ]
    return pl.concat(
        [base.filter(pl.col("_t")).select(*keep, day=pl.col("ts").dt.date()), out.select(feature_cols)],
        how="horizontal",
    )


ROW_PAST_COLUMNS = ("ts", "tx_id", "amount", "lat", "lon", "device_id", "ip", "country", "merchant_id")


def _customers_past(base: pl.DataFrame, past: _Past | None) -> _Past | None:
    """When the targets are a sample of the day's customers, their earlier rows (the columns the profile and the
    customer's windows read), read once for both; None otherwise."""
    c = "customer_id"
    customers = base.filter(pl.col("_t")).select(c).unique()
    if past is None or customers.height == base.select(c).n_unique():
        return None
    rows = past.rows.join(customers.lazy(), on=c, how="semi")
    return past.narrowed(rows.select(c, "ts_ms", *(n for n in ROW_PAST_COLUMNS if n in base.columns)))


# --------------------------------------------------------------------------- sliding windows of an entity


def _window_features(
    base: pl.DataFrame,
    entity: str,
    features: list[WindowFeature],
    registry: Registry,
    past: _Past | None,
    narrowed: _Past | None = None,
) -> pl.DataFrame:
    """The entity's window features, one row per target row of `base` in its order. A window [t - w, t) of a payment
    of the target span [start, end) holds the earlier rows from t - w: raw rows before the span from
    start - w up to min(start, end - w), whose membership varies with t, and, when the window is longer than
    the span, every row of [end - w, start) whatever t is, which count through the entity's totals."""
    key = _entity_expr(entity, registry)
    of_cols = sorted({f.of for f in features if f.of})
    cols = ["_i", "_key", "ts_ms", "tx_id", "amount", *of_cols]
    rows = base.with_columns(_key=key).filter(pl.col("_key").is_not_null()).select(*cols, "_t")
    keys = rows.filter(pl.col("_t")).select("_key").unique()
    subset = keys.height < rows.select("_key").n_unique()
    if subset:  # some targets only: their entities' rows
        rows = rows.filter(pl.col("_key").is_in(keys["_key"].implode()))
    keys = keys.lazy()
    windows = sorted({f.window_ms for f in features})
    whole = [w for w in windows if past is None or past.end - w >= past.start]
    longer = [w for w in windows if w not in whole]
    if past is not None and subset and narrowed is not None:
        past = narrowed
    elif past is not None and subset:  # the targets' entities' rows over the longest window, read once
        needed = {ENTITIES[entity], "ts", "tx_id", "amount", *of_cols} | ({"channel"} if entity == "iban" else set())
        reach = past.between(past.start - max(windows), past.start).with_columns(_key=key)
        past = past.narrowed(reach.join(keys, on="_key", how="semi").select(*sorted(needed), "ts_ms"))

    def earlier(lo: int, hi: int, only_keys: bool = True) -> pl.LazyFrame:
        rows = past.between(lo, hi).with_columns(_key=key).filter(pl.col("_key").is_not_null())
        rows = rows.join(keys, on="_key", how="semi") if only_keys else rows
        return rows.select(c for c in cols if c != "_i")

    small = registry.settings.small_amount
    parts = []
    if whole:
        raw = None if past is None else past.collect(earlier(past.start - max(whole), past.start))
        parts.append(_rolled(rows, raw, [f for f in features if f.window_ms in whole], small, None))
    for w in longer:
        raw = past.collect(earlier(past.start - w, past.end - w))
        mine = [f for f in features if f.window_ms == w]
        middle = earlier(past.end - w, past.start, only_keys=subset)
        parts.append(_rolled(rows, raw, mine, small, _Middle(middle, mine, small, past)))
    first = parts[0]
    if any(not p["_i"].equals(first["_i"]) for p in parts[1:]):
        raise AssertionError(f"{entity} windows: target rows out of step between windows")
    out = pl.concat([first, *(p.drop("_i") for p in parts[1:])], how="horizontal")
    targets = base.filter(pl.col("_t")).select("_i")
    if out.height == targets.height:
        return out.sort("_i").drop("_i")
    return targets.join(out, on="_i", how="left", maintain_order="left").drop("_i")


class _Middle:
    """The rows every target payment has whole in a longer window: the entity's totals (`_mc` payments, `_ms`
    sum, `_mx` max, `_msm` small payments, `_md:<column>` distinct values) and, for the raw and target rows,
    whether their value of a distinct column is among those (so that it is not counted twice)."""

    def __init__(self, rows: pl.LazyFrame, features: list[WindowFeature], small: float, past: _Past):
        self.rows, self.features, self.small, self.past = rows, features, small, past
        self.of_cols = sorted({f.of for f in features if f.of})

    def totals(self) -> pl.DataFrame:
        amount = pl.col("amount")
        return self.past.collect(
            self.rows.group_by("_key").agg(
                pl.len().cast(pl.Float64).alias("_mc"),
                amount.sum().alias("_ms"),
                amount.max().alias("_mx"),
                (amount < self.small).sum().cast(pl.Float64).alias("_msm"),
                *(pl.col(of).drop_nulls().n_unique().cast(pl.Float64).alias(f"_md:{of}") for of in self.of_cols),
            )
        )

    def masked(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with each distinct column's value nulled where the middle rows hold it for the same key."""
        for of in self.of_cols:
            pairs = frame.select("_key", of).drop_nulls().unique()
            seen = self.past.collect(
                self.rows.select("_key", of).join(pairs.lazy(), on=["_key", of], how="semi").unique()
            ).with_columns(_in=pl.lit(True))
            frame = (
                frame.join(seen, on=["_key", of], how="left", maintain_order="left")
                .with_columns(pl.when(pl.col("_in")).then(None).otherwise(pl.col(of)).alias(of))
                .drop("_in")
            )
        return frame


def _rolled(
    rows: pl.DataFrame, raw: pl.DataFrame | None, features: list[WindowFeature], small: float, middle: _Middle | None
) -> pl.DataFrame:
    """The features of the target rows (`_t`) of `rows` (`_i` and one column a feature, ordered by key, time,
    id) from rolling windows over `rows` and the raw earlier rows, plus the middle rows' totals when given."""
    frame = rows
    if raw is not None and raw.height:
        frame = pl.concat([frame, raw.with_columns(_t=pl.lit(False))], how="diagonal")
    frame = frame.sort("_key", "ts_ms", "tx_id")
    if middle is not None:
        frame = middle.masked(frame)
    # Keys numbered in the frame's order: rolling returns each key's rows in their order, keys in any order.
    frame = frame.with_columns(_g=(pl.col("_key") != pl.col("_key").shift()).fill_null(True).cum_sum())
    is_target = frame["_t"]
    outs = [frame.select("_i").filter(is_target)]
    for window in sorted({f.window_ms for f in features}):
        mine = [f for f in features if f.window_ms == window]
        aggs = [_aggregate_expr(f, small) for f in mine]
        if middle is not None:
            aggs += [pl.len().cast(pl.Float64).alias("_c"), pl.col("amount").sum().alias("_s")]
        rolled = (
            frame.rolling(index_column="ts_ms", period=f"{window}i", closed="left", group_by="_g")
            .agg(aggs)
            .sort("_g", maintain_order=True)
        )
        if not (rolled["_g"].equals(frame["_g"]) and rolled["ts_ms"].equals(frame["ts_ms"])):
            raise AssertionError("rolling windows came back in another order than their rows")
        rolled = rolled.filter(is_target)
        if middle is not None:
            rolled = _with_middle(rolled.with_columns(_key=frame["_key"].filter(is_target)), mine, middle)
        outs.append(rolled.select(f.name for f in mine))
    return pl.concat(outs, how="horizontal")


def _with_middle(rolled: pl.DataFrame, features: list[WindowFeature], middle: _Middle) -> pl.DataFrame:
    totals = middle.totals()
    rolled = rolled.join(totals, on="_key", how="left", maintain_order="left").with_columns(
        pl.col("_mc", "_ms", "_msm", *(f"_md:{of}" for of in middle.of_cols)).fill_null(0.0)
    )
    count, total = pl.col("_c") + pl.col("_mc"), pl.col("_s") + pl.col("_ms")
    exprs = {
        "count": lambda f: pl.col(f.name) + pl.col("_mc"),
        "sum": lambda f: pl.col(f.name) + pl.col("_ms"),
        "max": lambda f: pl.max_horizontal(f.name, "_mx"),
        "mean": lambda f: pl.when(count > 0).then(total / count).otherwise(None),
        "small": lambda f: pl.col(f.name) + pl.col("_msm"),
        "distinct": lambda f: pl.col(f.name) + pl.col(f"_md:{f.of}"),
    }
    return rolled.with_columns(exprs[f.aggregate](f).alias(f.name) for f in features)


# --------------------------------------------------------------------------- whole-day history


def _history_features(
    base: pl.DataFrame, column: str, features: list[HistoryFeature], registry: Registry, past: _Past | None
) -> pl.DataFrame:
    """Whole-day windows of a merchant or category: activity over the n days before the
    payment's day, fraud over the n days ending `delay` days before it."""
    delay = registry.label_delay

    def daily_of(rows):
        fraud = pl.col("is_fraud").cast(pl.Float64) if "is_fraud" in base.columns else pl.lit(0.0)
        return (
            rows.filter(pl.col(column).is_not_null())
            .group_by(column, "_day")
            .agg(
                count=pl.len().cast(pl.Float64),
                cents=(pl.col("amount") * 100).round().cast(pl.Int64).sum(),
                frauds=fraud.sum(),
            )
        )

    daily = daily_of(base)
    if past is not None:
        first_day = int(base["_day"].min()) - registry.history_span
        values = base.filter(pl.col("_t")).select(column).drop_nulls().unique()
        earlier = (
            past.between(first_day * DAY_MS, past.start)
            .join(values.lazy(), on=column, how="semi")
            .with_columns(_day=pl.col("ts_ms") // DAY_MS)
        )
        daily = (
            pl.concat([daily, past.collect(daily_of(earlier))])
            .group_by(column, "_day")
            .agg(pl.col("count").sum(), pl.col("cents").sum(), pl.col("frauds").sum())
        )
    daily = daily.sort(column, "_day")
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
    return (
        base.filter(pl.col("_t"))
        .select(column, "_day")
        .join(result, on=[column, "_day"], how="left", maintain_order="left")
        .drop(column, "_day")
    )


def _haversine_expr(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    p1, p2 = lat1.radians(), lat2.radians()
    dp, dl = p2 - p1, (lon2 - lon1).radians()
    a = (dp / 2).sin() ** 2 + p1.cos() * p2.cos() * (dl / 2).sin() ** 2
    return 2 * 6371.0 * a.sqrt().arcsin()


def _profile_before(base: pl.DataFrame, names: set[str], past: _Past, subset: bool) -> pl.DataFrame:
    """Per customer of `base` (read alone when `subset`), the profile of the earlier payments: `_n0` payments,
    `_s0` and `_ss0` sums of amounts and of their squares, `_last_ts` the last payment, and the last located one
    (`_pts`, `_plat`, `_plon`) when the distances are wanted."""
    c, amount = "customer_id", pl.col("amount")
    aggs = [
        pl.len().cast(pl.Float64).alias("_n0"),
        amount.sum().alias("_s0"),
        (amount * amount).sum().alias("_ss0"),
        pl.col("ts_ms").max().alias("_last_ts"),
    ]
    if "dist_prev_km" in names:
        located = pl.col("lat").is_not_null() & pl.col("lon").is_not_null()
        aggs += [
            pl.col("ts_ms").filter(located).max().alias("_pts"),
            pl.col("lat").sort_by("ts_ms", "tx_id").drop_nulls().last().alias("_plat"),
            pl.col("lon").sort_by("ts_ms", "tx_id").drop_nulls().last().alias("_plon"),
        ]
    rows = past.rows.join(base.select(c).unique().lazy(), on=c, how="semi") if subset else past.rows
    return past.collect(rows.group_by(c).agg(aggs))


def _seen_before(base: pl.DataFrame, column: str, past: _Past) -> pl.DataFrame:
    """The (customer, value) pairs of `base` that the customer used before, flagged `_seen`."""
    pairs = base.select("customer_id", column).drop_nulls().unique()
    query = past.rows.select("customer_id", column).join(pairs.lazy(), on=["customer_id", column], how="semi")
    return past.collect(query.unique()).with_columns(_seen=pl.lit(True))


def _row_features(
    base: pl.DataFrame, names: set[str], registry: Registry, past: _Past | None, narrowed: _Past | None = None
) -> pl.DataFrame:
    """The payment's own features and the customer's profile, one row per row of `base` in its order. With
    earlier payments, their profile continues the day's: counts and sums start from theirs, the previous
    payment and the previous location are theirs until the day has one, a device seen before is not new."""
    amount = pl.col("amount")
    c = "customer_id"
    df = base
    customers = base.filter(pl.col("_t")).select(c).unique()
    subset = customers.height < base.select(c).n_unique()
    if subset:  # some targets only: their customers' rows
        df = df.filter(pl.col(c).is_in(customers[c].implode()))
    if past is not None:
        if subset:  # the targets' customers' earlier rows, read once
            past = narrowed if narrowed is not None else _customers_past(base, past)
        df = df.join(_profile_before(df, names, past, subset), on=c, how="left", maintain_order="left")
        for feature, column in (("new_device", "device_id"), ("new_ip", "ip"), ("new_country", "country")):
            if feature in names:
                seen = _seen_before(df, column, past).rename({"_seen": f"_seen:{column}"})
                df = df.join(seen, on=[c, column], how="left", maintain_order="left")

    def then(expr: pl.Expr, start: str, how: str = "add") -> pl.Expr:
        """`expr` carried on from the earlier payments' `start` (nothing without them)."""
        if past is None:
            return expr
        return expr + pl.col(start).fill_null(0.0) if how == "add" else expr.fill_null(pl.col(start))

    df = df.sort(c, "ts_ms", "tx_id").with_columns(
        n=then(pl.int_range(pl.len()).over(c).cast(pl.Float64), "_n0"),
        s=then((amount.cum_sum() - amount).over(c), "_s0"),
        ss=then(((amount * amount).cum_sum() - amount * amount).over(c), "_ss0"),
        prev_ts=then(pl.col("ts_ms").shift(1).over(c), "_last_ts", "fill"),
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
            new = pl.col(column).is_not_null() & (first >= pl.col("ts_ms"))
            exprs[feature] = new if past is None else new & pl.col(f"_seen:{column}").is_null()
    if "home_dist_km" in names:
        exprs["home_dist_km"] = _haversine_expr(
            pl.col("customer_lat"), pl.col("customer_lon"), pl.col("lat"), pl.col("lon")
        ).fill_null(0.0)
    if "dist_prev_km" in names:
        located = pl.col("lat").is_not_null() & pl.col("lon").is_not_null()
        df = df.with_columns(
            plat=then(pl.col("lat").shift(1).forward_fill().over(c), "_plat", "fill"),
            plon=then(pl.col("lon").shift(1).forward_fill().over(c), "_plon", "fill"),
            pts=then(
                pl.when(located).then(pl.col("ts_ms")).otherwise(None).shift(1).forward_fill().over(c), "_pts", "fill"
            ),
        )
        dist = (
            pl.when(located & pl.col("pts").is_not_null())
            .then(_haversine_expr(pl.col("plat"), pl.col("plon"), pl.col("lat"), pl.col("lon")))
            .otherwise(0.0)
        )
        hours = ((pl.col("ts_ms") - pl.col("pts")) / 3.6e6).clip(1 / 60, None)
        exprs["dist_prev_km"] = dist
        exprs["speed_kmh"] = pl.when(located & pl.col("pts").is_not_null()).then(dist / hours).otherwise(0.0)
    features = df.select("_t", "_i", *(e.cast(pl.Float64).alias(n) for n, e in exprs.items() if n in names))
    return features.filter(pl.col("_t")).sort("_i").drop("_t", "_i")
