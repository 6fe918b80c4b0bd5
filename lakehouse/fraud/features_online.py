"""Online execution of the feature registry, on a Redis store: `update_args` applies one
transaction (once, by its id), `label_args` one fraud label, `first_read` fetches what a
transaction needs in one round trip and `online_features` turns that state into the same
values as `features_batch` (the registry's semantics, held together by a parity test).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lakehouse.fraud.features_registry import (
    DAY_MS,
    ENTITIES,
    HISTORY_ENTITIES,
    MAX_GAP_S,
    Registry,
)

SEP = "\x1f"  # field separator inside a stored event
# Fields of a stored event, in order; the time comes first, so reads need no scores.
EVENT_FIELDS = ("ts_ms", "tx_id", "amount", "customer_id", "card_id", "merchant_id", "device_id", "ip", "country")
PROFILE_FIELDS = ("n", "sum", "sumsq", "last_ts", "geo_ts", "lat", "lon")
FIRST_SEEN = (("new_device", "device_id", "d:"), ("new_ip", "ip", "i:"), ("new_country", "country", "c:"))


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
  if (not g) or ts >= tonumber(g) then
    redis.call('HSET', KEYS[2], 'geo_ts', ARGV[1], 'lat', ARGV[5], 'lon', ARGV[6])
  end
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

# Seeds a customer's profile with the payments before the warm-up's window (KEYS: profile; ARGV: n, sum, sumsq,
# ttl), once: a profile the store already holds (an earlier warm-up, live payments) is left as it is.
PROFILE_SEED_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'sum', ARGV[2], 'sumsq', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
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


def window_reads(
    tx: dict, ts_ms: int, entities: tuple[str, ...], registry: Registry
) -> list[tuple[str, str, int, str]]:
    """(entity, key, lowest score, highest score) of the sorted sets holding the entities' events in their windows."""
    return [
        (e, window_key(e, v), ts_ms - registry.horizon_ms(e), f"({ts_ms}")
        for e in entities
        if (v := entity_value(tx, e, registry)) is not None
    ]


def first_read(
    tx: dict, ts_ms: int, entities: tuple[str, ...], registry: Registry
) -> tuple[list[str], list, list[tuple[str, str]]]:
    """KEYS and ARGV of READ_SCRIPT for one transaction, and what its reply is (for `parse_replies`)."""
    zsets = [(e, window_key(e, v)) for e in entities if (v := entity_value(tx, e, registry)) is not None]
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
    plan = [("first", ",".join(e for e, _ in zsets) + "|" + ",".join(fields) + "|" + ",".join(e for e, _ in held))]
    return keys, args, plan


def parse_replies(
    plan: list[tuple[str, str]], replies: list, registry: Registry, state: OnlineState | None = None
) -> OnlineState:
    state = state or OnlineState()
    for (kind, what), reply in zip(plan, replies, strict=True):
        if kind == "events":
            state.events[what] = [member.split(SEP_BYTES) for member in reply]
            continue
        entities, fields, held = (part.split(",") if part else [] for part in what.split("|"))
        for entity, members in zip(entities, reply, strict=False):
            state.events[entity] = [member.split(SEP_BYTES) for member in members]
        profile, first_seen, sums, warm = reply[len(entities) :]
        state.profile = {f: _decode(v) for f, v in zip(PROFILE_FIELDS, profile, strict=True)}
        state.first_seen = {f: _decode(v) for f, v in zip(fields, first_seen, strict=True)}
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
        times, all_amounts = state.times_and_amounts(entity)
        start = bisect_left(times, ts_ms - window_ms)
        count = len(times) - start
        if not count:
            out.update(dict.fromkeys((f.name for f in wanted), 0.0))
            continue
        amounts = all_amounts[start:]
        total = sum(amounts)
        window = None
        for f in wanted:
            aggregate = f.aggregate
            if aggregate == "count":
                out[f.name] = float(count)
            elif aggregate == "sum":
                out[f.name] = total
            elif aggregate == "mean":
                out[f.name] = total / count
            elif aggregate == "max":
                out[f.name] = max(amounts)
            elif aggregate == "small":
                out[f.name] = float(sum(1 for a in amounts if a < small))
            else:
                window = state.events[entity][start:] if window is None else window
                i = _FIELD_INDEX[f.of]
                out[f.name] = float(len({e[i] for e in window if e[i]}))
    return out


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
