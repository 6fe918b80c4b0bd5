"""The one feature registry of the fraud case, computed two ways.

Every feature is declared once below. `batch_features` computes all of them point in time
over a transaction history with Polars (training, evaluation); the online path keeps the
same facts in Redis (`update_script` applies one transaction, `read_commands` fetches the
state a transaction needs in one pipeline) and `online_features` turns that state into the
same values. Semantics shared by both paths, for a transaction at time t (ms):

* window features of an entity (customer, card, merchant, device, IP, payee IBAN) aggregate
  that entity's earlier transactions with t - window <= ts < t (exact sliding windows);
* profile features of the customer aggregate every earlier transaction of the customer
  (order: time, then transaction id), e.g. mean and spread of amounts, devices, IPs and
  countries seen before, distance and speed from the previous located payment;
* a missing optional column (device, IP, IBAN, country, geography) removes the features that
  need it; a null value gives the feature's default.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

import polars as pl

from lakehouse.fraud.config import DAY_MS, HOUR_MS, MINUTE_MS, SETTINGS, FraudSettings

SEP = "\x1f"  # field separator inside a stored event

# entity -> (column, only for transfers)
ENTITIES: dict[str, tuple[str, bool]] = {
    "customer": ("customer_id", False),
    "card": ("card_id", False),
    "merchant": ("merchant_id", False),
    "device": ("device_id", False),
    "ip": ("ip", False),
    "iban": ("payee_iban", True),  # mule accounts receive transfers; card payments go to the merchant
}
DISTINCT_OF: dict[str, tuple[str, ...]] = {
    "customer": ("merchant_id", "country", "device_id", "ip"),
    "card": ("merchant_id",),
    "merchant": ("card_id",),
    "device": ("customer_id",),
    "ip": ("customer_id",),
    "iban": ("customer_id",),
}
# Heavy entities (a popular merchant has thousands of events an hour) are read only for layer 3.
LAYER3_ONLY_ENTITIES = ("merchant",)
MERCHANT_MAX_WINDOW_MS = HOUR_MS
# Fields of a stored event, in order.
EVENT_FIELDS = ("tx_id", "amount_eur", "customer_id", "card_id", "merchant_id", "device_id", "ip", "country")
OPTIONAL_COLUMNS = ("device_id", "ip", "payee_iban", "country", "lat", "lon")
AGGREGATES = ("count", "sum", "max", "mean", "small")
MAX_GAP_S = 30 * 86400.0


def _window_label(ms: int) -> str:
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS}d"
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS}h"
    return f"{ms // MINUTE_MS}m"


@dataclass(frozen=True)
class WindowFeature:
    name: str
    entity: str
    window_ms: int
    aggregate: str  # count | sum | max | mean | small | distinct
    of: str | None = None  # the column counted by `distinct`

    @property
    def needs(self) -> frozenset[str]:
        column = ENTITIES[self.entity][0]
        extra = {self.of} if self.of else set()
        return frozenset({column, *extra} & set(OPTIONAL_COLUMNS))


@dataclass(frozen=True)
class RowFeature:
    """A feature of the transaction itself or of the customer's profile."""

    name: str
    needs: frozenset[str] = frozenset()


def _window_features(settings: FraudSettings) -> tuple[WindowFeature, ...]:
    out = []
    for entity in ENTITIES:
        for w in settings.windows_ms:
            if entity == "merchant" and w > MERCHANT_MAX_WINDOW_MS:
                continue
            label = _window_label(w)
            for agg in AGGREGATES:
                out.append(WindowFeature(f"{entity}_{agg}_{label}", entity, w, agg))
            for of in DISTINCT_OF[entity]:
                out.append(WindowFeature(f"{entity}_distinct_{of.removesuffix('_id')}_{label}", entity, w, "distinct", of))
    return tuple(out)


WINDOW_FEATURES = _window_features(SETTINGS)
TX_FEATURES = (
    RowFeature("amount_eur"),
    RowFeature("log_amount"),
    RowFeature("hour"),
    RowFeature("is_ecommerce"),
    RowFeature("is_transfer"),
    RowFeature("is_small"),
    RowFeature("has_device", frozenset({"device_id"})),
    RowFeature("has_ip", frozenset({"ip"})),
)
PROFILE_FEATURES = (
    RowFeature("cust_tx_before"),
    RowFeature("cust_mean_amount"),
    RowFeature("cust_std_amount"),
    RowFeature("amount_z"),
    RowFeature("amount_ratio_mean"),
    RowFeature("secs_since_prev"),
    RowFeature("new_device", frozenset({"device_id"})),
    RowFeature("new_ip", frozenset({"ip"})),
    RowFeature("new_country", frozenset({"country"})),
    RowFeature("dist_prev_km", frozenset({"lat", "lon"})),
    RowFeature("speed_kmh", frozenset({"lat", "lon"})),
)
ALL_FEATURES: tuple[WindowFeature | RowFeature, ...] = (*TX_FEATURES, *PROFILE_FEATURES, *WINDOW_FEATURES)
FEATURE_NAMES = tuple(f.name for f in ALL_FEATURES)
DEFAULTS = {f.name: 0.0 for f in ALL_FEATURES} | {"amount_ratio_mean": 1.0, "secs_since_prev": MAX_GAP_S}

# Layer 2: about 50 light features (velocity 1/5/15 min, amount vs history, geography, device),
# all read in the first round trip. Layer 3 uses every available feature.
LAYER2_FEATURES = (
    "amount_eur", "log_amount", "hour", "is_ecommerce", "is_transfer", "is_small", "has_device", "has_ip",
    "cust_tx_before", "cust_mean_amount", "cust_std_amount", "amount_z", "amount_ratio_mean", "secs_since_prev",
    "new_device", "new_ip", "new_country", "dist_prev_km", "speed_kmh",
    "customer_count_1m", "customer_count_5m", "customer_count_15m", "customer_count_1h", "customer_count_1d",
    "customer_sum_1m", "customer_sum_15m", "customer_sum_1h", "customer_sum_1d", "customer_max_1h",
    "customer_small_15m", "customer_distinct_merchant_1h", "customer_distinct_country_1d", "customer_distinct_device_1d",
    "customer_distinct_ip_1d",
    "card_count_1m", "card_count_5m", "card_count_15m", "card_small_5m", "card_small_15m", "card_distinct_merchant_15m",
    "device_count_1h", "device_distinct_customer_1h", "device_distinct_customer_1d",
    "ip_count_1h", "ip_distinct_customer_1h", "ip_distinct_customer_1d",
    "iban_count_1d", "iban_distinct_customer_1d", "iban_sum_1d",
)


def available(columns: list[str] | tuple[str, ...] | set[str]) -> tuple[str, ...]:
    """Names of the features computable when the data has these columns."""
    present = set(columns)
    return tuple(f.name for f in ALL_FEATURES if f.needs <= present)


# --------------------------------------------------------------------------- batch (training)


def _entity_expr(entity: str) -> pl.Expr:
    column, transfers_only = ENTITIES[entity]
    value = pl.col(column)
    return pl.when(pl.col("channel") == "transfer").then(value).otherwise(None) if transfers_only else value


def _aggregate_expr(f: WindowFeature, small: float) -> pl.Expr:
    amount = pl.col("amount_eur")
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


def batch_features(tx: pl.DataFrame, settings: FraudSettings = SETTINGS) -> pl.DataFrame:
    """Point-in-time features of every transaction: tx_id, ts, is_fraud (when present) + features."""
    names = set(available(tx.columns))
    base = tx.with_columns(ts_ms=pl.col("ts").dt.epoch("ms")).sort("ts_ms", "tx_id")
    out = _row_features(base, names, settings)
    for entity in ENTITIES:
        features = [f for f in WINDOW_FEATURES if f.entity == entity and f.name in names]
        if not features:
            continue
        part = base.with_columns(_key=_entity_expr(entity)).filter(pl.col("_key").is_not_null()).sort("_key", "ts_ms", "tx_id")
        entity_out = part.select("tx_id", "_key", "ts_ms")
        for window in sorted({f.window_ms for f in features}):
            aggs = [_aggregate_expr(f, settings.small_amount_eur) for f in features if f.window_ms == window]
            rolled = part.rolling(index_column="ts_ms", period=f"{window}i", closed="left", group_by="_key").agg(aggs)
            # A window [t - w, t) depends only on (entity, t): rows that tie share their values.
            entity_out = entity_out.join(rolled.unique(["_key", "ts_ms"]), on=["_key", "ts_ms"], how="left")
        out = out.join(entity_out.drop("_key", "ts_ms"), on="tx_id", how="left")
    feature_cols = [n for n in FEATURE_NAMES if n in names]
    keep = [c for c in ("tx_id", "ts", "customer_id", "channel", "is_fraud", "fraud_pattern") if c in base.columns]
    return (
        base.select(keep)
        .join(out, on="tx_id", how="left", suffix="_f")
        .select(*keep, *(pl.col(n).cast(pl.Float64).fill_null(DEFAULTS[n]).fill_nan(DEFAULTS[n]).alias(n) for n in feature_cols))
    )


def _haversine_expr(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    p1, p2 = lat1.radians(), lat2.radians()
    dp, dl = p2 - p1, (lon2 - lon1).radians()
    a = (dp / 2).sin() ** 2 + p1.cos() * p2.cos() * (dl / 2).sin() ** 2
    return 2 * 6371.0 * a.sqrt().arcsin()


def _row_features(base: pl.DataFrame, names: set[str], settings: FraudSettings) -> pl.DataFrame:
    amount = pl.col("amount_eur")
    c = "customer_id"
    df = base.sort(c, "ts_ms", "tx_id").with_columns(
        n=pl.int_range(pl.len()).over(c).cast(pl.Float64),
        s=(amount.cum_sum() - amount).over(c),
        ss=((amount * amount).cum_sum() - amount * amount).over(c),
        prev_ts=pl.col("ts_ms").shift(1).over(c),
    )
    mean = pl.when(pl.col("n") > 0).then(pl.col("s") / pl.col("n")).otherwise(0.0)
    var = (pl.col("ss") / pl.col("n") - (pl.col("s") / pl.col("n")) ** 2).clip(0.0, None)
    std = pl.when(pl.col("n") >= 2).then(var.sqrt()).otherwise(0.0)
    df = df.with_columns(cust_mean_amount=mean, cust_std_amount=std)
    exprs = {
        "amount_eur": amount,
        "log_amount": amount.log1p(),
        "hour": pl.col("ts").dt.hour().cast(pl.Float64),
        "is_ecommerce": (pl.col("channel") == "ecommerce").cast(pl.Float64),
        "is_transfer": (pl.col("channel") == "transfer").cast(pl.Float64),
        "is_small": (amount < settings.small_amount_eur).cast(pl.Float64),
        "cust_tx_before": pl.col("n"),
        "cust_mean_amount": pl.col("cust_mean_amount"),
        "cust_std_amount": pl.col("cust_std_amount"),
        "amount_z": pl.when(pl.col("n") >= 2).then((amount - pl.col("cust_mean_amount")) / pl.col("cust_std_amount").clip(1.0, None)).otherwise(0.0),
        "amount_ratio_mean": pl.when(pl.col("n") >= 1).then(amount / pl.col("cust_mean_amount")).otherwise(1.0),
        "secs_since_prev": ((pl.col("ts_ms") - pl.col("prev_ts")) / 1000.0).clip(None, MAX_GAP_S).fill_null(MAX_GAP_S),
    }
    for feature, column in (("has_device", "device_id"), ("has_ip", "ip")):
        if feature in names:
            exprs[feature] = pl.col(column).is_not_null().cast(pl.Float64)
    for feature, column in (("new_device", "device_id"), ("new_ip", "ip"), ("new_country", "country")):
        if feature in names:
            first = pl.col("ts_ms").min().over(c, column)
            exprs[feature] = (pl.col(column).is_not_null() & (first >= pl.col("ts_ms"))).cast(pl.Float64)
    if "dist_prev_km" in names:
        located = pl.col("lat").is_not_null() & pl.col("lon").is_not_null()
        df = df.with_columns(
            plat=pl.col("lat").shift(1).forward_fill().over(c),
            plon=pl.col("lon").shift(1).forward_fill().over(c),
            pts=pl.when(located).then(pl.col("ts_ms")).otherwise(None).shift(1).forward_fill().over(c),
        )
        dist = pl.when(located & pl.col("pts").is_not_null()).then(_haversine_expr(pl.col("plat"), pl.col("plon"), pl.col("lat"), pl.col("lon"))).otherwise(0.0)
        hours = ((pl.col("ts_ms") - pl.col("pts")) / 3.6e6).clip(1 / 60, None)
        exprs["dist_prev_km"] = dist
        exprs["speed_kmh"] = pl.when(located & pl.col("pts").is_not_null()).then(dist / hours).otherwise(0.0)
    return df.select("tx_id", *(e.cast(pl.Float64).alias(n) for n, e in exprs.items() if n in names))


# --------------------------------------------------------------------------- online (Redis)


def window_key(entity: str, value: str) -> str:
    return f"fraud:w:{entity}:{value}"


def profile_key(customer: str) -> str:
    return f"fraud:p:{customer}"


def first_seen_key(customer: str) -> str:
    return f"fraud:f:{customer}"


def seen_key(tx_id: str) -> str:
    return f"fraud:seen:{tx_id}"


PROFILE_FIELDS = ("n", "sum", "sumsq", "last_ts", "geo_ts", "lat", "lon")
FIRST_SEEN = (("new_device", "device_id", "d:"), ("new_ip", "ip", "i:"), ("new_country", "country", "c:"))

# Applies one transaction to the store, once: a transaction id already applied is skipped,
# so at-least-once delivery and replays give the same state as a single delivery.
UPDATE_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[9]) then return 0 end
local ts = tonumber(ARGV[1])
for i = 4, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[10])
  redis.call('EXPIRE', KEYS[i], ARGV[7])
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
redis.call('EXPIRE', KEYS[2], ARGV[8])
for i = 11, #ARGV do
  local cur = redis.call('HGET', KEYS[3], ARGV[i])
  if (not cur) or ts < tonumber(cur) then redis.call('HSET', KEYS[3], ARGV[i], ARGV[1]) end
end
if #ARGV >= 11 then redis.call('EXPIRE', KEYS[3], ARGV[8]) end
return 1
"""


def _text(value) -> str:
    return "" if value is None else str(value)


def entity_value(tx: dict, entity: str) -> str | None:
    column, transfers_only = ENTITIES[entity]
    if transfers_only and tx.get("channel") != "transfer":
        return None
    value = tx.get(column)
    return None if value is None or value == "" else str(value)


def encode_event(tx: dict) -> str:
    return SEP.join(repr(float(tx["amount_eur"])) if f == "amount_eur" else _text(tx.get(f)) for f in EVENT_FIELDS)


def update_args(tx: dict, ts_ms: int, settings: FraudSettings = SETTINGS) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of UPDATE_SCRIPT for one transaction (a dict of the raw columns)."""
    amount = float(tx["amount_eur"])
    keys = [seen_key(tx["tx_id"]), profile_key(tx["customer_id"]), first_seen_key(tx["customer_id"])]
    keys += [window_key(e, v) for e in ENTITIES if (v := entity_value(tx, e)) is not None]
    located = tx.get("lat") is not None and tx.get("lon") is not None
    args = [
        str(ts_ms), encode_event(tx), repr(amount), repr(amount * amount),
        repr(float(tx["lat"])) if located else "", repr(float(tx["lon"])) if located else "",
        str(settings.window_ttl_s), str(settings.profile_ttl_s), str(settings.dedupe_ttl_s),
        str(ts_ms - max(settings.windows_ms)),
    ]
    args += [prefix + str(tx[col]) for _, col, prefix in FIRST_SEEN if tx.get(col) not in (None, "")]
    return keys, args


@dataclass
class OnlineState:
    """What the store holds for one transaction: events per entity, profile, first-seen times."""

    events: dict[str, list[tuple[float, list[str]]]]  # entity -> [(ts, fields)] ascending
    profile: dict[str, str | None]
    first_seen: dict[str, str | None]


def read_commands(pipe, tx: dict, ts_ms: int, entities: tuple[str, ...]) -> list[tuple[str, str]]:
    """Queue the reads of one transaction's state on a pipeline; returns what each reply is."""
    plan: list[tuple[str, str]] = []
    for entity in entities:
        value = entity_value(tx, entity)
        if value is None:
            continue
        horizon = MERCHANT_MAX_WINDOW_MS if entity == "merchant" else max(SETTINGS.windows_ms)
        pipe.zrangebyscore(window_key(entity, value), ts_ms - horizon, f"({ts_ms}", withscores=True)
        plan.append(("events", entity))
    if "customer" in entities:
        pipe.hmget(profile_key(tx["customer_id"]), PROFILE_FIELDS)
        plan.append(("profile", ""))
        fields = [prefix + str(tx[col]) for _, col, prefix in FIRST_SEEN if tx.get(col) not in (None, "")]
        if fields:
            pipe.hmget(first_seen_key(tx["customer_id"]), fields)
            plan.append(("first_seen", ",".join(fields)))
    return plan


def parse_replies(plan: list[tuple[str, str]], replies: list, state: OnlineState | None = None) -> OnlineState:
    state = state or OnlineState({}, {}, {})
    for (kind, what), reply in zip(plan, replies):
        if kind == "events":
            state.events[what] = [(score, _decode(member).split(SEP)) for member, score in reply]
        elif kind == "profile":
            state.profile = {f: _decode(v) for f, v in zip(PROFILE_FIELDS, reply)}
        else:
            state.first_seen = {f: _decode(v) for f, v in zip(what.split(","), reply)}
    return state


def _decode(value):
    return value.decode() if isinstance(value, bytes) else value


_FIELD_INDEX = {f: i for i, f in enumerate(EVENT_FIELDS)}


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def row_features(tx: dict, ts_ms: int, hour: int, state: OnlineState | None, names: frozenset[str], settings: FraudSettings = SETTINGS) -> dict[str, float]:
    """Transaction and profile features; without state (store unavailable) the profile gets defaults."""
    amount = float(tx["amount_eur"])
    out = {
        "amount_eur": amount,
        "log_amount": math.log1p(amount),
        "hour": float(hour),
        "is_ecommerce": float(tx.get("channel") == "ecommerce"),
        "is_transfer": float(tx.get("channel") == "transfer"),
        "is_small": float(amount < settings.small_amount_eur),
        "has_device": float(tx.get("device_id") not in (None, "")),
        "has_ip": float(tx.get("ip") not in (None, "")),
    }
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


_BY_ENTITY_WINDOW: dict[tuple[str, int], list[WindowFeature]] = {}
for _f in WINDOW_FEATURES:
    _BY_ENTITY_WINDOW.setdefault((_f.entity, _f.window_ms), []).append(_f)


def window_values(state: OnlineState, ts_ms: int, names: frozenset[str], entities: tuple[str, ...], settings: FraudSettings = SETTINGS) -> dict[str, float]:
    out: dict[str, float] = {}
    for (entity, window_ms), features in _BY_ENTITY_WINDOW.items():
        if entity not in entities:
            continue
        wanted = [f for f in features if f.name in names]
        if not wanted:
            continue
        events = state.events.get(entity)
        window = events[bisect_left(events, ts_ms - window_ms, key=lambda e: e[0]) :] if events else []
        for f in wanted:
            out[f.name] = _aggregate(window, f, settings.small_amount_eur)
    return out


def _aggregate(window: list[tuple[float, list[str]]], f: WindowFeature, small: float) -> float:
    if not window:
        return 0.0
    if f.aggregate == "count":
        return float(len(window))
    if f.aggregate == "distinct":
        i = _FIELD_INDEX[f.of]
        return float(len({e[1][i] for e in window if e[1][i] != ""}))
    amounts = [float(e[1][1]) for e in window]
    if f.aggregate == "sum":
        return sum(amounts)
    if f.aggregate == "max":
        return max(amounts)
    if f.aggregate == "mean":
        return sum(amounts) / len(amounts)
    return float(sum(1 for a in amounts if a < small))


def online_features(tx: dict, ts_ms: int, hour: int, state: OnlineState, names: frozenset[str], entities: tuple[str, ...]) -> dict[str, float]:
    """Every named feature from the store's state (window features of the given entities)."""
    return {**row_features(tx, ts_ms, hour, state, names), **window_values(state, ts_ms, names, entities)}
