"""The one feature registry of the fraud case, computed two ways.

Every feature is declared once, by `build_registry` from the feature settings.
`batch_features` computes all of them point in time over a transaction history with Polars
(training, evaluation, batch scoring); the online path keeps the same facts in Redis
(`update_args` applies one transaction, `label_args` one fraud label, `read_commands` fetches
what a transaction needs in one pipeline) and `online_features` turns that state into the
same values. Semantics shared by both paths, for a transaction at time t (ms):

* window features of an entity (customer, card, merchant, device, IP, payee IBAN) aggregate
  that entity's earlier transactions with t - window <= ts < t (exact sliding windows);
* history features of a merchant or a category cover whole UTC days before the day of t:
  activity (payments, mean amount) over the last n days, and fraud (known frauds, fraud
  rate) over the n days ending `label_delay_days` before it, so that only labels known at t
  count: a label arriving after t never changes a feature at t;
* profile features of the customer aggregate every earlier transaction of the customer
  (order: time, then transaction id), e.g. mean and spread of amounts, devices, IPs and
  countries seen before, distance and speed from the previous located payment;
* a missing optional column (device, IP, IBAN, country, category, geography) removes the
  features that need it; a null value gives the feature's default.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

import polars as pl

from lakehouse.fraud.settings import FeatureSettings, FraudSettings

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
SEP = "\x1f"  # field separator inside a stored event
MAX_GAP_S = 30 * 86400.0

# entity -> column; the payee IBAN is an entity of transfers only (mule accounts)
ENTITIES: dict[str, str] = {
    "customer": "customer_id",
    "card": "card_id",
    "merchant": "merchant_id",
    "device": "device_id",
    "ip": "ip",
    "iban": "payee_iban",
}
DISTINCT_OF: dict[str, tuple[str, ...]] = {
    "customer": ("merchant_id", "country", "device_id", "ip"),
    "card": ("merchant_id",),
    "merchant": ("card_id",),
    "device": ("customer_id",),
    "ip": ("customer_id",),
    "iban": ("customer_id",),
}
# Heavy entity (a popular merchant has thousands of events an hour): its exact windows are read for layer 3 only.
LAYER3_ONLY_ENTITIES = ("merchant",)
HISTORY_ENTITIES: dict[str, str] = {"merchant": "merchant_id", "category": "category"}
# Fields of a stored event, in order.
# Fields of a stored event, in order; the time comes first, so reads need no scores.
EVENT_FIELDS = ("ts_ms", "tx_id", "amount", "customer_id", "card_id", "merchant_id", "device_id", "ip", "country")
OPTIONAL_COLUMNS = (
    "device_id",
    "ip",
    "payee_iban",
    "country",
    "category",
    "lat",
    "lon",
    "customer_lat",
    "customer_lon",
)
AGGREGATES = ("count", "sum", "max", "mean", "small")
HISTORY_AGGREGATES = ("count", "mean", "frauds", "fraud_rate")  # frauds and fraud_rate over the label-delayed days


def _window_label(ms: int) -> str:
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS}d"
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS}h"
    if ms % MINUTE_MS == 0:
        return f"{ms // MINUTE_MS}m"
    return f"{ms // 1000}s"


def _needs(*columns: str | None) -> frozenset[str]:
    return frozenset(c for c in columns if c) & frozenset(OPTIONAL_COLUMNS)


@dataclass(frozen=True)
class WindowFeature:
    name: str
    entity: str
    window_ms: int
    aggregate: str  # count | sum | max | mean | small | distinct
    of: str | None = None  # the column counted by `distinct`

    @property
    def needs(self) -> frozenset[str]:
        return _needs(ENTITIES[self.entity], self.of)


@dataclass(frozen=True)
class HistoryFeature:
    name: str
    entity: str  # merchant | category
    days: int
    aggregate: str  # count | mean | frauds | fraud_rate

    @property
    def needs(self) -> frozenset[str]:
        return _needs(HISTORY_ENTITIES[self.entity])

    @property
    def delayed(self) -> bool:
        return self.aggregate in ("frauds", "fraud_rate")


@dataclass(frozen=True)
class RowFeature:
    """A feature of the transaction itself or of the customer's profile."""

    name: str
    needs: frozenset[str] = frozenset()
    daily_constant: bool = False  # the same for every payment of a day (the weekday): no daily distribution to compare


@dataclass(frozen=True)
class RatioFeature:
    """This amount against a mean of the entity's history (1 when there is none)."""

    name: str
    mean: str  # the feature holding the mean
    needs: frozenset[str] = frozenset()


TX_FEATURES = (
    RowFeature("amount"),
    RowFeature("log_amount"),
    RowFeature("hour"),
    RowFeature("weekday", daily_constant=True),
    RowFeature("is_ecommerce"),
    RowFeature("is_transfer"),
    RowFeature("is_small"),
    RowFeature("has_device", _needs("device_id")),
    RowFeature("has_ip", _needs("ip")),
    RowFeature("home_dist_km", _needs("lat", "lon", "customer_lat", "customer_lon")),
)
PROFILE_FEATURES = (
    RowFeature("cust_tx_before"),
    RowFeature("cust_mean_amount"),
    RowFeature("cust_std_amount"),
    RowFeature("amount_z"),
    RowFeature("amount_ratio_mean"),
    RowFeature("secs_since_prev"),
    RowFeature("new_device", _needs("device_id")),
    RowFeature("new_ip", _needs("ip")),
    RowFeature("new_country", _needs("country")),
    RowFeature("dist_prev_km", _needs("lat", "lon")),
    RowFeature("speed_kmh", _needs("lat", "lon")),
)
PROFILE_FIELDS = ("n", "sum", "sumsq", "last_ts", "geo_ts", "lat", "lon")
FIRST_SEEN = (("new_device", "device_id", "d:"), ("new_ip", "ip", "i:"), ("new_country", "country", "c:"))


@dataclass(frozen=True)
class Registry:
    """Every feature, from the feature settings and the channel roles."""

    settings: FeatureSettings
    ecommerce_channels: tuple[str, ...]
    transfer_channels: tuple[str, ...]
    timezone: str
    windows: tuple[WindowFeature, ...]
    history: tuple[HistoryFeature, ...]
    ratios: tuple[RatioFeature, ...]
    rows: tuple[RowFeature, ...] = TX_FEATURES + PROFILE_FEATURES
    by_entity_window: dict[tuple[str, int], tuple[WindowFeature, ...]] = field(
        default_factory=dict, compare=False, hash=False
    )

    @cached_property
    def all(self) -> tuple[WindowFeature | HistoryFeature | RowFeature | RatioFeature, ...]:
        return (*self.rows, *self.windows, *self.history, *self.ratios)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.all)

    @cached_property
    def by_name(self) -> dict[str, WindowFeature | HistoryFeature | RowFeature | RatioFeature]:
        return {f.name: f for f in self.all}

    @cached_property
    def defaults(self) -> dict[str, float]:
        ones = {f.name for f in self.ratios} | {"amount_ratio_mean"}
        return {f.name: 1.0 if f.name in ones else 0.0 for f in self.all} | {"secs_since_prev": MAX_GAP_S}

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def label_delay(self) -> int:
        return self.settings.label_delay_days

    @cached_property
    def history_span(self) -> int:
        """Days before the payment's day that history features reach (the longest window plus the label delay)."""
        return max(self.settings.history_days) + self.label_delay

    @cached_property
    def horizons(self) -> dict[str, int]:
        """How far back each entity's events are kept and read."""
        return {e: max(f.window_ms for f in self.windows if f.entity == e) for e in ENTITIES}

    def horizon_ms(self, entity: str) -> int:
        return self.horizons[entity]

    @cached_property
    def plans(self) -> dict:
        """(names, entities) -> what `online_features` computes for them, built once per pair."""
        return {}

    def reach_days(self, name: str) -> int:
        """Whole days before a payment that a feature's value depends on (0: the payment and the customer's profile)."""
        f = self.by_name[name]
        if isinstance(f, WindowFeature):
            return math.ceil(f.window_ms / DAY_MS)
        if isinstance(f, HistoryFeature):
            return f.days + (self.label_delay if f.delayed else 0)
        if isinstance(f, RatioFeature):
            return self.reach_days(f.mean)
        return 0

    def not_comparable_daily(self, names, history_days: int) -> dict[str, str]:
        """Of `names` (other names than this registry's are ignored), those whose distribution over a window starting
        `history_days` days after the first day of data cannot be compared with one later day's, and why: features
        constant over a day, and windows that reach back before the data (still filling up, so their values grow
        with the history whatever the traffic does)."""
        names = [n for n in names if n in self.by_name]
        out = {
            n: "the same for every payment of a day"
            for n in names
            if isinstance(self.by_name[n], RowFeature) and self.by_name[n].daily_constant
        }
        for n in names:
            if n not in out and (reach := self.reach_days(n)) > history_days:
                out[n] = (
                    f"reaches {reach} days back; the reference starts {history_days} days after the first day of data"
                )
        return out

    def available(self, columns) -> tuple[str, ...]:
        """Names of the features computable when the data has these columns."""
        present = set(columns)
        return tuple(f.name for f in self.all if f.needs <= present)

    def window_entities(self, names) -> tuple[str, ...]:
        wanted = set(names)
        return tuple(e for e in ENTITIES if any(f.entity == e and f.name in wanted for f in self.windows))

    @cached_property
    def layer2(self) -> tuple[str, ...]:
        """The light features of layer 2 (seed: about 50; velocity, amount vs history, geography,
        device, merchant and category history), all read in the first round trip."""
        one_day = DAY_MS
        short = {f.window_ms for f in self.windows if f.window_ms <= 15 * MINUTE_MS}
        picked = [f.name for f in self.rows] + [f.name for f in self.ratios]
        for f in self.windows:
            w, a, e = f.window_ms, f.aggregate, f.entity
            if (
                (
                    e == "customer"
                    and (a == "count" or (a == "mean" and w >= one_day) or (a == "sum" and HOUR_MS <= w <= one_day))
                )
                or (e == "customer" and a == "distinct" and w == one_day)
                or (e == "card" and a in ("count", "small") and w in short)
                or (e in ("device", "ip", "iban") and a in ("count", "distinct") and w in (HOUR_MS, one_day))
            ):
                picked.append(f.name)
        longest = max(self.settings.history_days)
        picked += [
            f.name
            for f in self.history
            if f.aggregate in ("count", "fraud_rate") or (f.aggregate == "mean" and f.days == longest)
        ]
        return tuple(n for n in self.names if n in set(picked))

    def spec(self) -> dict:
        """What a model stores to rebuild this registry (see `registry_from_spec`)."""
        return {
            "features": self.settings.model_dump(mode="json"),
            "ecommerce_channels": list(self.ecommerce_channels),
            "transfer_channels": list(self.transfer_channels),
            "timezone": self.timezone,
        }


@lru_cache(maxsize=16)
def build_registry(
    settings: FeatureSettings, ecommerce_channels: tuple[str, ...], transfer_channels: tuple[str, ...], timezone: str
) -> Registry:
    def ms(windows) -> list[int]:
        return [round(w.total_seconds() * 1000) for w in windows]

    by_entity = {e: ms(settings.windows) for e in ENTITIES}
    by_entity["customer"] = sorted(set(by_entity["customer"]) | set(ms(settings.customer_windows)))
    by_entity["merchant"] = ms(settings.merchant_windows)
    windows = []
    for entity, lengths in by_entity.items():
        for w in lengths:
            label = _window_label(w)
            windows += [WindowFeature(f"{entity}_{agg}_{label}", entity, w, agg) for agg in AGGREGATES]
            windows += [
                WindowFeature(f"{entity}_distinct_{of.removesuffix('_id')}_{label}", entity, w, "distinct", of)
                for of in DISTINCT_OF[entity]
            ]
    history = [
        HistoryFeature(f"{entity}_hist_{agg}_{d}d", entity, d, agg)
        for entity in HISTORY_ENTITIES
        for d in settings.history_days
        for agg in HISTORY_AGGREGATES
    ]
    ratios = [
        RatioFeature(f"amount_vs_customer_{_window_label(w)}", f"customer_mean_{_window_label(w)}")
        for w in by_entity["customer"]
        if w >= DAY_MS
    ]
    longest = max(settings.history_days)
    ratios.append(RatioFeature(f"amount_vs_merchant_{longest}d", f"merchant_hist_mean_{longest}d"))
    grouped: dict[tuple[str, int], list[WindowFeature]] = {}
    for f in windows:
        grouped.setdefault((f.entity, f.window_ms), []).append(f)
    return Registry(
        settings,
        ecommerce_channels,
        transfer_channels,
        timezone,
        tuple(windows),
        tuple(history),
        tuple(ratios),
        by_entity_window={k: tuple(v) for k, v in grouped.items()},
    )


def registry_for(settings: FraudSettings) -> Registry:
    return build_registry(
        settings.features, tuple(settings.ecommerce_channels), tuple(settings.transfer_channels), settings.hour_timezone
    )


def registry_from_spec(spec: dict) -> Registry:
    return build_registry(
        FeatureSettings.model_validate(spec["features"]),
        tuple(spec["ecommerce_channels"]),
        tuple(spec["transfer_channels"]),
        spec["timezone"],
    )


# --------------------------------------------------------------------------- batch (training, scoring)


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


# --------------------------------------------------------------------------- online (Redis)

EPOCH_KEY = "fraud:epoch"  # written when the store is warmed: its absence means the store lost its data


def window_key(entity: str, value: str) -> str:
    return f"fraud:w:{entity}:{value}"


def history_key(entity: str, value: str) -> str:
    return f"fraud:h:{entity}:{value}"


def profile_key(customer: str) -> str:
    return f"fraud:p:{customer}"


def first_seen_key(customer: str) -> str:
    return f"fraud:f:{customer}"


def seen_key(tx_id: str) -> str:
    return f"fraud:seen:{tx_id}"


def label_seen_key(tx_id: str) -> str:
    return f"fraud:label:{tx_id}"


# Applies one transaction to the store, once: a transaction id already applied is skipped, so
# at-least-once delivery and replays give the same state as a single delivery. An entity keeps
# the events within its horizon (plus the clock tolerance, for late events) of its newest one,
# whatever the order they arrive in.
# KEYS: seen, profile, first-seen, <zsets>, <history hashes>
# ARGV: ts, event, amount, amount^2, lat, lon, profile ttl, dedupe ttl, #zsets, #hashes, day,
#       history ttl, (kept span, ttl) per zset, amount in cents, first-seen fields...
UPDATE_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[8]) then return 0 end
local ts = tonumber(ARGV[1])
local nz, nh = tonumber(ARGV[9]), tonumber(ARGV[10])
for i = 1, nz do
  local key = KEYS[3 + i]
  redis.call('ZADD', key, ARGV[1], ARGV[2])
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', newest - tonumber(ARGV[11 + 2 * i])))
  redis.call('EXPIRE', key, ARGV[12 + 2 * i])
end
for i = 1, nh do
  local key = KEYS[3 + nz + i]
  redis.call('HINCRBY', key, 'c:' .. ARGV[11], 1)
  redis.call('HINCRBY', key, 's:' .. ARGV[11], ARGV[13 + 2 * nz])
  redis.call('EXPIRE', key, ARGV[12])
end
redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'sum', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[2], 'sumsq', ARGV[4])
local last = redis.call('HGET', KEYS[2], 'last_ts')
if (not last) or ts >= tonumber(last) then redis.call('HSET', KEYS[2], 'last_ts', ARGV[1]) end
if ARGV[5] ~= '' then
  local g = redis.call('HGET', KEYS[2], 'geo_ts')
  if (not g) or ts >= tonumber(g) then redis.call('HSET', KEYS[2], 'geo_ts', ARGV[1], 'lat', ARGV[5], 'lon', ARGV[6]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[7])
local first = 14 + 2 * nz
for i = first, #ARGV do
  local cur = redis.call('HGET', KEYS[3], ARGV[i])
  if (not cur) or ts < tonumber(cur) then redis.call('HSET', KEYS[3], ARGV[i], ARGV[1]) end
end
if #ARGV >= first then redis.call('EXPIRE', KEYS[3], ARGV[7]) end
return 1
"""

# Counts one fraud label, once, in the day of its transaction (KEYS: seen, history hashes;
# ARGV: dedupe ttl, day, history ttl). It counts in features only once its delay has passed.
LABEL_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'f:' .. ARGV[2], 1)
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
return 1
"""


# The first read of a transaction's state, as one command (one to pack, one reply to parse):
# its entities' events in their windows, the customer's profile and first-seen times, the
# history sums of its merchant and category, and whether the store is warm (the epoch key).
# KEYS: zsets (nz), profile, first-seen, history hashes (nh), epoch.
# ARGV: ts, nz, nh, one lower bound per zset, the number of first-seen fields, those fields,
#       day, label delay, the history windows in days (ascending).
# History sums, per hash and window n: payments and cents over days [day - n, day - 1], and
# payments and frauds over the n days ending `delay` days before.
READ_SCRIPT = """
local nz, nh = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, nz do out[i] = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[3 + i], '(' .. ARGV[1]) end
out[nz + 1] = redis.call('HMGET', KEYS[nz + 1], 'n', 'sum', 'sumsq', 'last_ts', 'geo_ts', 'lat', 'lon')
local a = 4 + nz
local nf = tonumber(ARGV[a])
if nf > 0 then out[nz + 2] = redis.call('HMGET', KEYS[nz + 2], unpack(ARGV, a + 1, a + nf)) else out[nz + 2] = {} end
a = a + nf + 1
local day, delay = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
local longest = tonumber(ARGV[#ARGV])
local span = longest + delay
local sums = {}
if nh > 0 then
  local fields = {}
  for k = 1, span do fields[#fields + 1] = 'c:' .. (day - k) end
  for k = 1, longest do fields[#fields + 1] = 's:' .. (day - k) end
  for k = 1, longest do fields[#fields + 1] = 'f:' .. (day - delay - k) end
  for i = 1, nh do
    local v = redis.call('HMGET', KEYS[nz + 2 + i], unpack(fields))
    local c, s, f = {[0] = 0}, {[0] = 0}, {[0] = 0}  -- running sums over k days back
    for k = 1, span do c[k] = c[k - 1] + (tonumber(v[k]) or 0) end
    for k = 1, longest do
      s[k] = s[k - 1] + (tonumber(v[span + k]) or 0)
      f[k] = f[k - 1] + (tonumber(v[span + longest + k]) or 0)
    end
    for w = a + 2, #ARGV do
      local n = tonumber(ARGV[w])
      sums[#sums + 1] = c[n]
      sums[#sums + 1] = s[n]
      sums[#sums + 1] = c[delay + n] - c[delay]
      sums[#sums + 1] = f[n]
    end
  end
end
out[nz + 3] = sums
out[nz + 4] = redis.call('EXISTS', KEYS[#KEYS])
return out
"""


def _text(value) -> str:
    return "" if value is None else str(value)


def entity_value(tx: dict, entity: str, registry: Registry) -> str | None:
    if entity == "iban" and tx.get("channel") not in registry.transfer_channels:
        return None
    value = tx.get(ENTITIES[entity])
    return None if value is None or value == "" else str(value)


def history_values(tx: dict) -> list[tuple[str, str]]:
    return [(e, str(v)) for e, column in HISTORY_ENTITIES.items() if (v := tx.get(column)) not in (None, "")]


def encode_event(tx: dict, ts_ms: int) -> str:
    fields = {"ts_ms": str(ts_ms), "amount": repr(float(tx["amount"]))}
    return SEP.join(fields[f] if f in fields else _text(tx.get(f)) for f in EVENT_FIELDS)


def cents(amount: float) -> int:
    """History sums add whole hundredths of the currency: exact, whatever the order of the events."""
    return round(amount * 100)


def history_ttl_s(registry: Registry) -> int:
    return (registry.history_span + 2) * 86400


def update_args(tx: dict, ts_ms: int, registry: Registry, ttls) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of UPDATE_SCRIPT for one transaction (a dict of the raw columns); `ttls`
    has the store's TTLs (window, profile, dedupe seconds) and the clock tolerance."""
    amount = float(tx["amount"])
    zsets = [
        (window_key(e, v), registry.horizon_ms(e)) for e in ENTITIES if (v := entity_value(tx, e, registry)) is not None
    ]
    hashes = [history_key(e, v) for e, v in history_values(tx)]
    keys = [
        seen_key(tx["tx_id"]),
        profile_key(tx["customer_id"]),
        first_seen_key(tx["customer_id"]),
        *(k for k, _ in zsets),
        *hashes,
    ]
    located = tx.get("lat") is not None and tx.get("lon") is not None
    args = [
        str(ts_ms),
        encode_event(tx, ts_ms),
        repr(amount),
        repr(amount * amount),
        repr(float(tx["lat"])) if located else "",
        repr(float(tx["lon"])) if located else "",
        str(max(ttls.profile_ttl_s, registry.horizon_ms("customer") // 1000)),
        str(ttls.dedupe_ttl_s),
        str(len(zsets)),
        str(len(hashes)),
        str(ts_ms // DAY_MS),
        str(history_ttl_s(registry)),
    ]
    late_ms = round(ttls.future_tolerance_s * 1000)
    for _, horizon in zsets:
        args += [str(horizon + late_ms), str(max(ttls.window_ttl_s, horizon // 1000))]
    args.append(str(cents(amount)))
    args += [prefix + str(tx[col]) for _, col, prefix in FIRST_SEEN if tx.get(col) not in (None, "")]
    return keys, args


def label_args(label: dict, registry: Registry, dedupe_ttl_s: int) -> tuple[list[str], list[str]] | None:
    """KEYS and ARGV of LABEL_SCRIPT for a fraud label (tx_id, ts_ms, merchant_id, category);
    None for a label that counts nothing (not fraud)."""
    if not label.get("is_fraud"):
        return None
    keys = [label_seen_key(label["tx_id"]), *(history_key(e, v) for e, v in history_values(label))]
    return keys, [str(dedupe_ttl_s), str(int(label["ts_ms"]) // DAY_MS), str(history_ttl_s(registry))]


@dataclass
class OnlineState:
    """What the store holds for one transaction: events per entity (as stored, bytes), profile,
    first-seen times, history sums of its merchant and category, and whether the store is warm."""

    events: dict[str, list[list[bytes]]] = field(
        default_factory=dict
    )  # entity -> events' fields (EVENT_FIELDS), in time order
    profile: dict[str, str | None] = field(default_factory=dict)
    first_seen: dict[str, str | None] = field(default_factory=dict)
    history: dict[str, dict[int, tuple[int, int, int, int]]] = field(default_factory=dict)  # entity -> days -> sums
    warm: bool = True
    parsed: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)  # entity -> (times, amounts), once

    def times_and_amounts(self, entity: str) -> tuple[list[int], list[float]]:
        if entity not in self.parsed:
            events = self.events.get(entity) or []
            self.parsed[entity] = ([int(e[_TS]) for e in events], [float(e[_AMOUNT]) for e in events])
        return self.parsed[entity]


def read_commands(
    pipe, tx: dict, ts_ms: int, entities: tuple[str, ...], registry: Registry, first: bool
) -> list[tuple[str, str]]:
    """Queue the reads of one transaction's state on a pipeline; returns what each reply is.
    The first read (one script) also fetches the profile, first-seen times, history sums and the epoch."""
    zsets = [(e, window_key(e, v)) for e in entities if (v := entity_value(tx, e, registry)) is not None]
    if not first:
        for entity, key in zsets:
            pipe.zrangebyscore(key, ts_ms - registry.horizon_ms(entity), f"({ts_ms}")
        return [("events", entity) for entity, _ in zsets]
    fields = [prefix + str(tx[col]) for _, col, prefix in FIRST_SEEN if tx.get(col) not in (None, "")]
    held = history_values(tx) if registry.history else []
    keys = [
        *(k for _, k in zsets),
        profile_key(tx["customer_id"]),
        first_seen_key(tx["customer_id"]),
        *(history_key(e, v) for e, v in held),
        EPOCH_KEY,
    ]
    args = [
        ts_ms,
        len(zsets),
        len(held),
        *(ts_ms - registry.horizon_ms(e) for e, _ in zsets),
        len(fields),
        *fields,
        ts_ms // DAY_MS,
        registry.label_delay,
        *registry.settings.history_days,
    ]
    pipe.eval(READ_SCRIPT, len(keys), *keys, *args)
    return [("first", ",".join(e for e, _ in zsets) + "|" + ",".join(fields) + "|" + ",".join(e for e, _ in held))]


def parse_replies(
    plan: list[tuple[str, str]], replies: list, registry: Registry, state: OnlineState | None = None
) -> OnlineState:
    state = state or OnlineState()
    for (kind, what), reply in zip(plan, replies):
        if kind == "events":
            state.events[what] = [member.split(SEP_BYTES) for member in reply]
            continue
        entities, fields, held = (part.split(",") if part else [] for part in what.split("|"))
        for entity, members in zip(entities, reply):
            state.events[entity] = [member.split(SEP_BYTES) for member in members]
        profile, first_seen, sums, warm = reply[len(entities) :]
        state.profile = {f: _decode(v) for f, v in zip(PROFILE_FIELDS, profile)}
        state.first_seen = {f: _decode(v) for f, v in zip(fields, first_seen)}
        days = registry.settings.history_days
        for i, entity in enumerate(held):
            start = i * 4 * len(days)
            state.history[entity] = {n: tuple(sums[start + 4 * j : start + 4 * j + 4]) for j, n in enumerate(days)}
        state.warm = bool(warm)
    return state


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


SEP_BYTES = SEP.encode()
_FIELD_INDEX = {f: i for i, f in enumerate(EVENT_FIELDS)}


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def local_time(ts_ms: int, registry: Registry) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(registry.zone)


def row_features(
    tx: dict, ts_ms: int, state: OnlineState | None, names: frozenset[str], registry: Registry
) -> dict[str, float]:
    """Transaction and profile features; without state (store unavailable) only the transaction's."""
    amount = float(tx["amount"])
    local = local_time(ts_ms, registry)
    out = {
        "amount": amount,
        "log_amount": math.log1p(amount),
        "hour": float(local.hour),
        "weekday": float(local.isoweekday()),
        "is_ecommerce": float(tx.get("channel") in registry.ecommerce_channels),
        "is_transfer": float(tx.get("channel") in registry.transfer_channels),
        "is_small": float(amount < registry.settings.small_amount),
        "has_device": float(tx.get("device_id") not in (None, "")),
        "has_ip": float(tx.get("ip") not in (None, "")),
    }
    coords = [tx.get(k) for k in ("customer_lat", "customer_lon", "lat", "lon")]
    out["home_dist_km"] = _haversine(*map(float, coords)) if all(v is not None for v in coords) else 0.0
    if state is None:
        return {n: v for n, v in out.items() if n in names}
    p = state.profile
    n = float(p.get("n") or 0)
    s, ss = float(p.get("sum") or 0.0), float(p.get("sumsq") or 0.0)
    mean = s / n if n > 0 else 0.0
    std = math.sqrt(max(ss / n - (s / n) ** 2, 0.0)) if n >= 2 else 0.0
    out.update(
        cust_tx_before=n,
        cust_mean_amount=mean,
        cust_std_amount=std,
        amount_z=(amount - mean) / max(std, 1.0) if n >= 2 else 0.0,
        amount_ratio_mean=amount / mean if n >= 1 else 1.0,
        secs_since_prev=min((ts_ms - float(p["last_ts"])) / 1000.0, MAX_GAP_S) if p.get("last_ts") else MAX_GAP_S,
    )
    for feature, col, prefix in FIRST_SEEN:
        value = tx.get(col)
        if value in (None, ""):
            out[feature] = 0.0
        else:
            first = state.first_seen.get(prefix + str(value))
            out[feature] = float(first is None or float(first) >= ts_ms)
    located = tx.get("lat") is not None and tx.get("lon") is not None
    if located and p.get("geo_ts"):
        dist = _haversine(float(p["lat"]), float(p["lon"]), float(tx["lat"]), float(tx["lon"]))
        hours = max((ts_ms - float(p["geo_ts"])) / 3.6e6, 1 / 60)
        out["dist_prev_km"], out["speed_kmh"] = dist, dist / hours
    else:
        out["dist_prev_km"] = out["speed_kmh"] = 0.0
    return {n: v for n, v in out.items() if n in names}


_TS, _AMOUNT = _FIELD_INDEX["ts_ms"], _FIELD_INDEX["amount"]


def window_values(state: OnlineState, ts_ms: int, groups, small: float) -> dict[str, float]:
    """groups: (entity, window, wanted features) of the windows to compute."""
    out: dict[str, float] = {}
    for entity, window_ms, wanted in groups:
        events = state.events.get(entity) or []
        times, all_amounts = state.times_and_amounts(entity)
        start = bisect_left(times, ts_ms - window_ms)
        window, amounts = events[start:], all_amounts[start:]
        total = sum(amounts)
        for f in wanted:
            out[f.name] = _aggregate(window, amounts, total, f, small)
    return out


def _aggregate(window: list[list[bytes]], amounts: list[float], total: float, f: WindowFeature, small: float) -> float:
    if not window:
        return 0.0
    aggregate = f.aggregate
    if aggregate == "count":
        return float(len(window))
    if aggregate == "sum":
        return total
    if aggregate == "mean":
        return total / len(amounts)
    if aggregate == "max":
        return max(amounts)
    if aggregate == "small":
        return float(sum(1 for a in amounts if a < small))
    i = _FIELD_INDEX[f.of]
    return float(len({e[i] for e in window if e[i]}))


def history_feature_values(state: OnlineState, names: frozenset[str], registry: Registry) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in registry.history:
        if f.name not in names:
            continue
        sums = state.history.get(f.entity)
        if sums is None:
            out[f.name] = 0.0
            continue
        count, cents, delayed_count, frauds = sums[f.days]
        out[f.name] = {
            "count": float(count),
            "mean": cents / 100 / count if count else 0.0,
            "frauds": float(frauds),
            "fraud_rate": frauds / delayed_count if delayed_count else 0.0,
        }[f.aggregate]
    return out


def ratio_values(features: dict[str, float], names: frozenset[str], registry: Registry) -> dict[str, float]:
    amount = features["amount"]
    return {
        f.name: (amount / m if (m := features.get(f.mean, 0.0)) > 0 else 1.0)
        for f in registry.ratios
        if f.name in names and f.mean in features
    }


def _plan(registry: Registry, names: frozenset[str], entities: tuple[str, ...]):
    key = (names, entities)
    if key not in registry.plans:
        needed = names | {f.mean for f in registry.ratios if f.name in names} | {"amount"}
        groups = tuple(
            (entity, window_ms, wanted)
            for (entity, window_ms), features in registry.by_entity_window.items()
            if entity in entities and (wanted := tuple(f for f in features if f.name in needed))
        )
        registry.plans[key] = (needed, groups)
    return registry.plans[key]


def online_features(
    tx: dict, ts_ms: int, state: OnlineState, names: frozenset[str], entities: tuple[str, ...], registry: Registry
) -> dict[str, float]:
    """Every named feature from the store's state (window features of the given entities)."""
    needed, groups = _plan(registry, names, entities)
    out = {
        **row_features(tx, ts_ms, state, needed, registry),
        **window_values(state, ts_ms, groups, registry.settings.small_amount),
        **history_feature_values(state, needed, registry),
    }
    out.update(ratio_values(out, names, registry))
    return {n: v for n, v in out.items() if n in names}
