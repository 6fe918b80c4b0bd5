"""The online side: feature store reads, the decision cascade on one transaction, the event
stream's consumer groups, the decision log and the store's warm-up (the spool and its
publisher are in `spool`).

Flow of one transaction: read its state from Redis in one pipelined round trip (bounded by a
timeout; a failure opens a short circuit so an outage costs no waiting), compute the registry
features, apply the rules, score layer 2 and, inside the band, layer 3 (a second round trip
for the heavy merchant windows), decide, and append the event to the on-disk spool before the
answer leaves: a decision that was answered is never lost, even to kill -9. The publisher
moves spooled events to the event stream (a Redis Stream, or Kafka); the `features` consumer
group applies them to the store (idempotent by transaction id) and the `decision-log` group
writes them to the lake by day. Fraud labels (chargebacks) travel the same way and count in
the store once their delay has passed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from operator import itemgetter

import numpy as np
import polars as pl

from lakehouse.common.event_stream import Event, EventStream, KafkaEventStream, RedisEventStream
from lakehouse.common.ids import shown
from lakehouse.common.lake import Lake
from lakehouse.fraud.compiled_trees import compiled_or_booster
from lakehouse.fraud.features_online import (
    EPOCH_KEY,
    LABEL_SCRIPT,
    PROFILE_SEED_SCRIPT,
    READ_SCRIPT,
    UPDATE_SCRIPT,
    OnlineState,
    first_read,
    label_args,
    online_features,
    parse_replies,
    profile_key,
    row_features,
    update_args,
    window_reads,
)
from lakehouse.fraud.features_registry import ENTITIES, LAYER3_ONLY_ENTITIES, Registry
from lakehouse.fraud.inputs import event_problem
from lakehouse.fraud.model import Cascade
from lakehouse.fraud.rules import LIST_NAMES, RuleLists, rule_features, rule_hits, rule_score
from lakehouse.fraud.settings import CASE, FraudSettings, ServingSettings

log = logging.getLogger(__name__)

STREAM_KEY = "fraud:events"
KAFKA_TOPIC = "fraud.events"
FEATURES_GROUP = "features"
DECISION_LOG_GROUP = "decision-log"
CONSUMER_GROUPS = (FEATURES_GROUP, DECISION_LOG_GROUP)
LISTS_KEY_PREFIX = "fraud:lists:"
LISTS_THRESHOLDS_KEY = "fraud:lists:thresholds"
LISTS_VERSION_KEY = "fraud:lists:version"
WARMING_KEY = "fraud:warming"  # held by the service process re-warming the store (kept alive while it works)
WARM_RUN_PREFIX = "fraud:warm-run:"  # one per warm-up: a flush during the warm-up removes it
DECISION_LOG_PARTS = "decision_log_parts"
LABEL_LOG_PARTS = "label_log_parts"
# Events applied per pipeline: Redis runs a pipeline's update scripts back to back (0.1-0.2 ms each,
# from its commandstats), so a decision's read arriving behind a consumer batch of 200 would wait
# 20-40 ms; 10 keep that wait near a millisecond (and, inline in the service, let waiting decisions
# run between chunks).
APPLY_CHUNK = 10
FIRST_ENTITIES = tuple(e for e in ENTITIES if e not in LAYER3_ONLY_ENTITIES)
ALL_ENTITIES = tuple(ENTITIES)
TX_FIELDS = (
    "tx_id",
    "customer_id",
    "card_id",
    "merchant_id",
    "channel",
    "amount",
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
FLOAT_FIELDS = ("amount", "lat", "lon", "customer_lat", "customer_lon")
LABEL = "label"  # the `kind` of a label event (decision events have none)


def epoch_ms(ts: datetime) -> int:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return round((ts - datetime(1970, 1, 1)).total_seconds() * 1000)


# --------------------------------------------------------------------------- warming the store (sync)

# Marks the store warm only if the warm-up's own key survived it: a store flushed while it was
# being warmed holds part of the history and must not be called warm.
MARK_WARM_SCRIPT = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


class StoreLostDuringWarmUp(RuntimeError):
    """The store lost its data while it was being warmed: what was written is incomplete."""


def warm_store(
    client,
    transactions: pl.DataFrame,
    registry: Registry,
    serving: ServingSettings,
    labels: pl.DataFrame | None = None,
    batch: int = 2000,
    profiles: pl.DataFrame | None = None,
) -> int:
    """Apply transactions (in time order), their fraud labels and other labels (tx_id, ts,
    merchant_id, category, is_fraud) to the store with the consumer's updates, then mark the
    store warm; returns how many transactions were new. `profiles` (customer_id, n, sum, sumsq)
    holds what each customer paid before the transactions: it seeds the profiles the store does
    not hold yet, so a customer's count, mean and spread cover the same history as the batch
    features. Raises StoreLostDuringWarmUp when the store lost its data meanwhile (the epoch is
    then not written)."""
    run_key = WARM_RUN_PREFIX + uuid.uuid4().hex
    client.set(run_key, "1", ex=6 * 3600)
    if profiles is not None:
        seed = client.register_script(PROFILE_SEED_SCRIPT)
        ttl = str(max(serving.profile_ttl_s, registry.horizon_ms("customer") // 1000))
        for start in range(0, profiles.height, batch):
            pipe = client.pipeline(transaction=False)
            for customer, n, total, squares in profiles.slice(start, batch).iter_rows():
                seed(keys=[profile_key(customer)], args=[n, repr(total), repr(squares), ttl], client=pipe)
            pipe.execute()
    script = client.register_script(UPDATE_SCRIPT)
    label = client.register_script(LABEL_SCRIPT)
    applied = 0
    rows = transactions.sort("ts", "tx_id").iter_rows(named=True)
    while chunk := [r for _, r in zip(range(batch), rows, strict=False)]:
        pipe = client.pipeline(transaction=False)
        for row in chunk:
            ts_ms = epoch_ms(row["ts"])
            keys, args = update_args(row, ts_ms, registry, serving)
            script(keys=keys, args=args, client=pipe)
        applied += sum(int(reply) for reply in pipe.execute())
    known = transactions.filter(pl.col("is_fraud")).select(
        "tx_id", "ts", "merchant_id", *[c for c in ("category",) if c in transactions.columns]
    )
    if labels is not None:
        known = pl.concat([known, labels.filter(pl.col("is_fraud")).select(known.columns)], how="diagonal_relaxed")
    pipe = client.pipeline(transaction=False)
    for row in known.iter_rows(named=True):
        if labelled := label_args(
            {**row, "is_fraud": True, "ts_ms": epoch_ms(row["ts"])}, registry, serving.dedupe_ttl_s
        ):
            label(keys=labelled[0], args=labelled[1], client=pipe)
    pipe.execute()
    if not client.eval(MARK_WARM_SCRIPT, 2, run_key, EPOCH_KEY, datetime.now(UTC).isoformat()):
        raise StoreLostDuringWarmUp("the feature store lost its data while it was being warmed")
    return applied


@dataclass(frozen=True)
class StoreHistory:
    """What the store should hold on a day: the transactions of the days its windows reach, the labels that came
    through the stream, and the profiles of those transactions' customers before them."""

    transactions: pl.DataFrame
    labels: pl.DataFrame | None
    profiles: pl.DataFrame | None


def store_history(lake: Lake, registry: Registry, last_day: date) -> StoreHistory:
    """Everything the store should hold on `last_day`, from the lake: the transactions and the
    decision log of the days its windows reach (with the fraud labels known so far), the
    labels that came through the stream, and each of their customers' count, sum and sum of
    squares over the loaded days before (the batch features' profile counts every loaded day)."""
    first = last_day - timedelta(days=registry.history_span + 1)
    days = {(first + timedelta(days=i)).isoformat() for i in range((last_day - first).days + 1)}

    def read(name: str) -> pl.DataFrame | None:
        stored = [d for d in lake.partitions(CASE, name, "day") if d in days]
        return lake.read_partitions(CASE, name, "day", stored) if stored else None

    columns = [*TX_FIELDS, "ts", "is_fraud"]
    frames = [
        f.select([c for c in columns if c in f.columns])
        for f in (read("transactions"), read(DECISION_LOG_PARTS))
        if f is not None
    ]
    if not frames:
        schema = {
            "tx_id": pl.String,
            "ts": pl.Datetime("ms"),
            "customer_id": pl.String,
            "merchant_id": pl.String,
            "amount": pl.Float64,
            "is_fraud": pl.Boolean,
        }
        return StoreHistory(pl.DataFrame(schema=schema), None, None)
    history = pl.concat(frames, how="diagonal_relaxed").with_columns(pl.col("is_fraud").fill_null(False))
    history = history.sort("ts", "tx_id").unique("tx_id", keep="first", maintain_order=True)
    earlier = [d for d in lake.partitions(CASE, "transactions", "day") if d < first.isoformat()]
    profiles = None
    if earlier:
        customers = history.select("customer_id").unique()
        profiles = (
            lake.read_partitions(CASE, "transactions", "day", earlier)
            .select("customer_id", "amount")
            .join(customers, on="customer_id")
            .group_by("customer_id")
            .agg(n=pl.len(), sum=pl.col("amount").sum(), sumsq=(pl.col("amount") ** 2).sum())
        )
    return StoreHistory(history, read(LABEL_LOG_PARTS), profiles)


def publish_lists(client, lists: RuleLists) -> str:
    """Replace the published rules atomically and bump their version."""
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    pipe = client.pipeline(transaction=True)
    for name in LIST_NAMES:
        key = LISTS_KEY_PREFIX + name
        pipe.delete(key)
        values = sorted(getattr(lists, name))
        if values:
            pipe.sadd(key, *values)
    pipe.delete(LISTS_THRESHOLDS_KEY)
    if lists.thresholds:
        pipe.hset(LISTS_THRESHOLDS_KEY, mapping={k: repr(v) for k, v in lists.thresholds.items()})
    pipe.set(LISTS_VERSION_KEY, version)
    pipe.execute()
    return version


async def read_lists(client) -> tuple[RuleLists, str | None]:
    pipe = client.pipeline(transaction=False)
    pipe.get(LISTS_VERSION_KEY)
    for name in LIST_NAMES:
        pipe.smembers(LISTS_KEY_PREFIX + name)
    pipe.hgetall(LISTS_THRESHOLDS_KEY)
    version, *sets, thresholds = await pipe.execute()
    lists = RuleLists(
        **{name: frozenset(v.decode() for v in members) for name, members in zip(LIST_NAMES, sets, strict=True)},
        thresholds={k.decode(): float(v) for k, v in thresholds.items()},
    )
    return lists, version.decode() if version else None


# --------------------------------------------------------------------------- deciding


class Breaker:
    """After `threshold` store failures in a row, skip the store for `retry_after_s`, then let a
    request try again. A lone hiccup costs one degraded decision; an outage costs no waiting."""

    def __init__(self, threshold: int, retry_after_s: float):
        self.threshold = threshold
        self.retry_after_s = retry_after_s
        self.open_until = 0.0
        self.consecutive = 0

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self) -> None:
        self.consecutive += 1
        if self.consecutive >= self.threshold:
            self.open_until = time.monotonic() + self.retry_after_s

    def succeeded(self) -> None:
        self.consecutive = 0
        self.open_until = 0.0


@dataclass(frozen=True)
class LoadedModel:
    """A champion as the decider uses it: its cascade, version, and layers 2 and 3 as they are scored online."""

    cascade: Cascade
    version: str
    layer2: object = None  # `predict` of one row; default: the cascade's own
    layer3: object = None  # `inplace_predict` of one row; default: the cascade's own

    @classmethod
    def of(cls, cascade: Cascade, version: str) -> LoadedModel:
        """With both layers' trees compiled (`compiled_trees`): tens of microseconds a row instead of the
        libraries' hundreds."""
        return cls(cascade, version, compiled(cascade.layer2), compiled(cascade.layer3))

    def score_layer2(self, x: np.ndarray) -> float:
        return float((self.layer2 or self.cascade.layer2).predict(x, num_threads=1)[0])

    def score_layer3(self, x: np.ndarray) -> float:
        return float((self.layer3 or self.cascade.layer3).inplace_predict(x)[0])


def compiled(layer):
    """A layer with its booster compiled, whether the cascade holds the booster or a wrapper around it (a
    dataclass with a `booster` field, e.g. a calibration); anything else is kept as it is."""
    booster = getattr(layer, "booster", None)
    if booster is not None and dataclasses.is_dataclass(layer):
        return dataclasses.replace(layer, booster=compiled_or_booster(booster))
    return compiled_or_booster(layer)


@dataclass
class Decision:
    tx_id: str
    decision: str
    score: float
    layer: int
    reasons: list[str]
    model_version: str
    degraded: bool
    latency_ms: float
    layer_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "tx_id": self.tx_id,
            "decision": self.decision,
            "score": self.score,
            "layer": self.layer,
            "reasons": self.reasons,
            "model_version": self.model_version,
            "degraded": self.degraded,
            "latency_ms": self.latency_ms,
            "layer_ms": self.layer_ms,
        }


@lru_cache(maxsize=8)
def _layer_names(cascade: Cascade) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Features layer 2 and the rules need, every feature of layer 3, and those layer 3 adds."""
    first = frozenset(cascade.layer2_features) | frozenset(rule_features(cascade.registry))
    return first, frozenset(cascade.layer3_features), frozenset(cascade.layer3_features) - first


@dataclass(frozen=True)
class _Inputs:
    """A layer's input row from a dict of features: its defaults, then the features, in the layer's order."""

    defaults: dict[str, float]
    pick: itemgetter

    def row(self, features: dict[str, float]) -> np.ndarray:
        values = self.defaults.copy()
        values.update(features)
        picked = self.pick(values)
        return np.array([picked if isinstance(picked, tuple) else (picked,)], dtype=np.float64)


@lru_cache(maxsize=8)
def _inputs(cascade: Cascade) -> tuple[_Inputs, _Inputs]:
    """Layer 2's inputs (defaults: the degraded ones) and layer 3's (defaults: 0)."""
    defaults = cascade.degraded_defaults
    layer2, layer3 = cascade.layer2_features, cascade.layer3_features
    return (
        _Inputs({n: defaults.get(n, 0.0) for n in layer2}, itemgetter(*layer2)),
        _Inputs(dict.fromkeys(layer3, 0.0), itemgetter(*layer3)),
    )


class Decider:
    """Decides one transaction at a time from the current model, rules and store.
    `on_store_lost` is called when a read finds the store without its epoch key."""

    def __init__(self, client, model: LoadedModel, lists: RuleLists, settings: FraudSettings, on_store_lost=None):
        self.client = client
        self.read_script = client.register_script(READ_SCRIPT)  # EVALSHA: the script's text is not sent each time
        self.model = model  # replaced as a whole on promotion: a request keeps the one it started with
        self.lists = lists
        self.settings = settings
        self.breaker = Breaker(settings.serving.redis_failures_to_open, settings.serving.redis_retry_after_s)
        self.on_store_lost = on_store_lost

    async def prepare(self) -> None:
        """Open a connection and load the read script, outside any decision's time budget (a first read that
        had to do both could miss its timeout, and every miss would start over on a new connection)."""
        self.read_script.sha = await self.client.script_load(READ_SCRIPT)

    async def _read(
        self, tx: dict, ts_ms: int, entities: tuple[str, ...], registry: Registry, state: OnlineState | None = None
    ) -> OnlineState | None:
        if not self.breaker.allows():
            return None
        try:
            async with asyncio.timeout(self.settings.serving.redis_timeout_s):
                if state is None:  # one script: one command to send, one reply
                    keys, args, plan = first_read(tx, ts_ms, entities, registry)
                    replies = [await self.read_script(keys=keys, args=args)]
                else:
                    reads = window_reads(tx, ts_ms, entities, registry)
                    plan = [("events", entity) for entity, *_ in reads]
                    replies = [await self.client.zrangebyscore(key, low, high) for _, key, low, high in reads]
        except Exception as exc:  # timeout, connection refused, reset: decide without the store
            log.debug("feature store unavailable: %r", exc)
            self.breaker.failed()
            return None
        self.breaker.succeeded()
        return parse_replies(plan, replies, registry, state)

    async def decide(self, tx: dict, ts_ms: int) -> tuple[Decision, dict[str, float]]:
        """The decision and the features it used."""
        started = time.perf_counter()
        model = self.model
        cascade = model.cascade
        registry = cascade.registry
        names2, names3, added3 = _layer_names(cascade)
        state = await self._read(tx, ts_ms, FIRST_ENTITIES, registry)
        reason = None
        if state is None:
            reason = "degraded:feature_store_unavailable"
        elif not state.warm:
            reason = "degraded:feature_store_lost"
            if self.on_store_lost is not None:
                self.on_store_lost()
            state = None
        t_features = time.perf_counter()
        if state is None:
            features = {**cascade.degraded_defaults, **row_features(tx, ts_ms, None, names3, registry)}
        else:  # layer-3 window features are computed only when layer 3 runs
            features = online_features(tx, ts_ms, state, names2, FIRST_ENTITIES, registry)
        hits = rule_hits(tx, features, self.lists, registry, self.settings)
        rscore = rule_score(hits, self.lists, self.settings)
        t_rules = time.perf_counter()
        layer_ms = {"features": (t_features - started) * 1e3, "rules": (t_rules - t_features) * 1e3}
        if rscore >= cascade.rule_block_threshold:
            score, layer = 1.0, 1
        else:
            features["rule_score"] = rscore
            inputs2, inputs3 = _inputs(cascade)
            score = model.score_layer2(inputs2.row(features))
            layer = 2
            t_l2 = time.perf_counter()
            layer_ms["layer2"] = (t_l2 - t_rules) * 1e3
            low, high = cascade.band
            if state is not None and low <= score <= high:
                state = await self._read(tx, ts_ms, LAYER3_ONLY_ENTITIES, registry, state)
                if state is not None:
                    features.update(online_features(tx, ts_ms, state, added3, ALL_ENTITIES, registry))
                    score = model.score_layer3(inputs3.row(features))
                    layer = 3
                    layer_ms["layer3"] = (time.perf_counter() - t_l2) * 1e3
                else:
                    reason = "degraded:feature_store_unavailable"
        if layer == 1 or score >= cascade.block_threshold:
            decision = "block"
        elif score >= cascade.review_threshold:
            decision = "review"
        else:
            decision = "approve"
        reasons = [f"rule:{h}" for h in hits] + ([reason] if reason else [])
        latency = (time.perf_counter() - started) * 1e3
        return Decision(
            tx["tx_id"],
            decision,
            round(score, 6),
            layer,
            reasons,
            model.version,
            reason is not None,
            round(latency, 3),
            layer_ms,
        ), features


# --------------------------------------------------------------------------- events


def event_fields(
    tx: dict, ts_ms: int, decision: Decision, features: dict[str, float], layer2_features: tuple[str, ...]
) -> dict[str, str]:
    out = {k: "" if tx.get(k) is None else str(tx[k]) for k in TX_FIELDS}
    out.update(
        ts_ms=str(ts_ms),
        decision=decision.decision,
        score=repr(decision.score),
        layer=str(decision.layer),
        degraded="1" if decision.degraded else "0",
        model_version=decision.model_version,
        latency_ms=repr(decision.latency_ms),
        rule_hits=",".join(r.removeprefix("rule:") for r in decision.reasons if r.startswith("rule:")),
        decided_at=str(round(time.time() * 1000)),
        features=json.dumps({n: features.get(n) for n in layer2_features if n in features}),
    )
    return out


def label_fields(tx_id: str, ts_ms: int, merchant_id: str, category: str | None, is_fraud: bool) -> dict[str, str]:
    return {
        "kind": LABEL,
        "tx_id": tx_id,
        "ts_ms": str(ts_ms),
        "merchant_id": merchant_id,
        "category": category or "",
        "is_fraud": "1" if is_fraud else "0",
        "received_at": str(round(time.time() * 1000)),
    }


def tx_from_event(fields: dict[str, str]) -> tuple[dict, int]:
    tx = {k: (fields.get(k) or None) for k in TX_FIELDS}
    for k in FLOAT_FIELDS:
        tx[k] = float(tx[k]) if tx[k] is not None else None
    return tx, int(fields["ts_ms"])


def label_from_event(fields: dict[str, str]) -> dict:
    return {
        "tx_id": fields["tx_id"],
        "ts_ms": int(fields["ts_ms"]),
        "merchant_id": fields["merchant_id"],
        "category": fields.get("category") or None,
        "is_fraud": fields["is_fraud"] == "1",
    }


# --------------------------------------------------------------------------- consumers


class StreamConsumer:
    """One consumer of a group: first what the group was delivered but did not acknowledge
    (a restart after a crash), then new events."""

    group = ""

    def __init__(self, stream: EventStream, batch: int, name: str = "c1"):
        self.stream = stream
        self.name = name
        self.batch = batch
        self.processed = 0
        self.stopping = False

    async def ensure_group(self) -> None:
        await self.stream.ensure_group(self.group)

    async def replay_from(self, event_id: str) -> None:
        """Deliver the stream again from `event_id` (idempotent: already-applied events change nothing)."""
        await self.stream.replay_from(self.group, event_id)

    async def read(self, block_ms: int | None = None) -> list[Event]:
        return await self.stream.read(self.group, self.name, self.batch, block_ms)

    async def handle(self, messages: list[Event]) -> None:
        raise NotImplementedError

    async def step(self, block_ms: int | None = None) -> int:
        messages = await self.read(block_ms)
        if messages:
            await self.handle(messages)
            await self.stream.ack(self.group, [m for m, _ in messages])
            self.processed += len(messages)
        return len(messages)

    async def drain(self) -> int:
        """Process until nothing is pending or new (tests, demo, shutdown)."""
        total = 0
        while n := await self.step():
            total += n
        return total

    async def run(self) -> None:
        """Until `stopping` is set (checked between reads, which block at most 100 ms)."""
        await self.ensure_group()
        while not self.stopping:
            try:
                await self.step(block_ms=100)
            except (
                Exception
            ) as exc:  # stream away (or Redis restarted empty: no group) or a bad batch: retry after a pause
                log.debug("%s consumer: %r", self.group, exc)
                await asyncio.sleep(0.2)
                try:
                    await self.ensure_group()
                except Exception:
                    pass


def valid_events(messages: list[Event], max_id_length: int, group: str) -> list[Event]:
    """The events whose ids keep the id rule; the others (from another producer of the stream) are left
    out of the store and the decision log, and logged."""
    kept = []
    for message in messages:
        if (problem := event_problem(message[1], max_id_length)) is None:
            kept.append(message)
        else:
            log.warning("%s consumer: event %s skipped: %s", group, shown(message[0]), problem)
    return kept


def event_stream(redis_client, settings: FraudSettings) -> EventStream:
    """Kafka when `kafka_bootstrap` is set, otherwise a Redis Stream on `redis_client`."""
    if settings.kafka_bootstrap:
        return KafkaEventStream(
            settings.kafka_bootstrap, KAFKA_TOPIC, key_field="customer_id", partitions=settings.serving.kafka_partitions
        )
    return RedisEventStream(redis_client, STREAM_KEY, settings.serving.stream_maxlen)


class FeatureConsumer(StreamConsumer):
    """Applies each event to the feature store (at least once; the updates skip known ids)."""

    group = FEATURES_GROUP

    def __init__(self, stream: EventStream, client, registry: Registry, settings: FraudSettings, name: str = "c1"):
        super().__init__(stream, settings.serving.consumer_batch, name)
        self.client = client
        self.registry = registry  # the champion's (replaced on promotion)
        self.serving = settings.serving
        self.script = client.register_script(UPDATE_SCRIPT)
        self.label_script = client.register_script(LABEL_SCRIPT)
        self.max_id_length = settings.plausibility.max_id_length

    async def apply(self, messages: list[Event]) -> None:
        events = valid_events(messages, self.max_id_length, self.group)
        for start in range(0, len(events), APPLY_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for _, fields in events[start : start + APPLY_CHUNK]:
                if fields.get("kind") == LABEL:
                    if labelled := label_args(label_from_event(fields), self.registry, self.serving.dedupe_ttl_s):
                        await self.label_script(keys=labelled[0], args=labelled[1], client=pipe)
                    continue
                tx, ts_ms = tx_from_event(fields)
                keys, args = update_args(tx, ts_ms, self.registry, self.serving)
                await self.script(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def handle(self, messages) -> None:
        await self.apply(messages)


DECISION_LOG_SCHEMA = {
    "tx_id": pl.String,
    "ts": pl.Datetime("ms"),
    "customer_id": pl.String,
    "card_id": pl.String,
    "merchant_id": pl.String,
    "channel": pl.String,
    "amount": pl.Float64,
    "device_id": pl.String,
    "ip": pl.String,
    "payee_iban": pl.String,
    "country": pl.String,
    "category": pl.String,
    "lat": pl.Float64,
    "lon": pl.Float64,
    "customer_lat": pl.Float64,
    "customer_lon": pl.Float64,
    "decision": pl.String,
    "score": pl.Float64,
    "layer": pl.Int64,
    "degraded": pl.Boolean,
    "model_version": pl.String,
    "latency_ms": pl.Float64,
    "rule_hits": pl.String,
    "decided_at": pl.Datetime("ms"),
    "features": pl.String,
    "stream_id": pl.String,
}
LABEL_LOG_SCHEMA = {
    "tx_id": pl.String,
    "ts": pl.Datetime("ms"),
    "merchant_id": pl.String,
    "category": pl.String,
    "is_fraud": pl.Boolean,
    "received_at": pl.Datetime("ms"),
}


def _typed(rows: list[dict], schema: dict) -> pl.DataFrame:
    raw = {
        k: pl.Int64 if isinstance(t, pl.Datetime) else pl.Boolean if t == pl.Boolean else pl.String
        for k, t in schema.items()
    }
    df = pl.DataFrame(rows, schema=raw)
    return df.select(pl.col(k).cast(t) for k, t in schema.items())  # integers of ms become datetimes


def decision_rows(messages: list[Event]) -> pl.DataFrame:
    rows = []
    for mid, f in messages:
        row = {
            k: (f.get(k) or None) for k in DECISION_LOG_SCHEMA if k not in ("ts", "stream_id", "degraded", "decided_at")
        }
        row.update(
            ts=int(f["ts_ms"]), degraded=f.get("degraded") == "1", stream_id=mid, decided_at=int(f["decided_at"])
        )
        rows.append(row)
    return _typed(rows, DECISION_LOG_SCHEMA)


def label_rows(messages: list[Event]) -> pl.DataFrame:
    rows = [
        {
            "tx_id": f["tx_id"],
            "ts": int(f["ts_ms"]),
            "merchant_id": f["merchant_id"],
            "category": f.get("category") or None,
            "is_fraud": f["is_fraud"] == "1",
            "received_at": int(f["received_at"]),
        }
        for _, f in messages
    ]
    return _typed(rows, LABEL_LOG_SCHEMA)


class DecisionLogConsumer(StreamConsumer):
    """Writes each batch of events as Parquet parts of their day (decisions, and labels in
    their own table), then acknowledges it.

    A crash between the write and the acknowledgement writes the batch again; readers
    keep one row per transaction id. Reads are larger than the feature group's and, after a
    read that was not full, the consumer waits a moment so that parts stay few and big (a
    part costs ~2 ms of CPU to build and write whatever its size: 20 events ~2 ms, 2,000 ~15 ms).
    """

    group = DECISION_LOG_GROUP

    def __init__(self, stream: EventStream, lake: Lake, settings: FraudSettings, name: str = "c1"):
        super().__init__(stream, settings.serving.decision_log_batch, name)
        self.lake = lake
        self.wait_s = settings.serving.decision_log_wait_s
        self.max_id_length = settings.plausibility.max_id_length

    async def handle(self, messages) -> None:
        # Building and writing Parquet takes milliseconds: off the event loop the service shares.
        await asyncio.to_thread(self.write, messages)
        if len(messages) < self.batch and not self.stopping:
            await asyncio.sleep(self.wait_s)  # written, acknowledged after the wait

    def write(self, messages) -> None:
        messages = valid_events(messages, self.max_id_length, self.group)
        labels = [m for m in messages if m[1].get("kind") == LABEL]
        decisions = [m for m in messages if m[1].get("kind") != LABEL]
        for table, rows in (
            (DECISION_LOG_PARTS, decision_rows(decisions) if decisions else None),
            (LABEL_LOG_PARTS, label_rows(labels) if labels else None),
        ):
            if rows is None:
                continue
            for (day,), part in rows.with_columns(_day=pl.col("ts").dt.date()).group_by("_day"):
                self.lake.write_part(part.drop("_day"), CASE, table, ("day", day.isoformat()))


def read_decision_log(lake: Lake, day: str | date) -> pl.DataFrame:
    """One day of the decision log: every part, one row per transaction."""
    day = str(day)
    if day not in lake.partitions(CASE, DECISION_LOG_PARTS, "day"):
        return pl.DataFrame(schema=DECISION_LOG_SCHEMA)
    df = lake.read_partitions(CASE, DECISION_LOG_PARTS, "day", [day])
    return df.unique("tx_id", keep="first").sort("ts", "tx_id")
