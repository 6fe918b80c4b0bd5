"""The online side: feature store reads, the decision cascade on one transaction, the event
stream (publisher and consumer groups) and the decision log.

Flow of one transaction: read its state from Redis in one pipelined round trip (bounded by a
timeout; a failure opens a short circuit so an outage costs no waiting), compute the registry
features, apply the rules, score layer 2 and, inside the band, layer 3 (a second round trip
for the heavy merchant windows), decide, and hand the event to the publisher. The publisher
appends events to the event stream (a Redis Stream, or Kafka) in the background; the
`features` consumer group applies each to the store (idempotent by transaction id) and the
`decision-log` group writes them to the lake by day. Events wait in memory while the stream
is away and are spooled to disk on shutdown, so none is lost across a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.common.event_stream import Event, EventStream, KafkaEventStream, RedisEventStream
from lakehouse.fraud.config import (
    DECISION_LOG_GROUP,
    FEATURES_GROUP,
    KAFKA_TOPIC,
    LISTS_KEY_PREFIX,
    LISTS_VERSION_KEY,
    SETTINGS,
    STREAM_KEY,
    FraudSettings,
    fraud_serving_env,
)
from lakehouse.fraud.features import (
    ENTITIES,
    LAYER3_ONLY_ENTITIES,
    UPDATE_SCRIPT,
    OnlineState,
    parse_replies,
    read_commands,
    row_features,
    update_args,
    window_values,
)
from lakehouse.fraud.model import Cascade
from lakehouse.fraud.rules import LIST_NAMES, RULE_FEATURES, RuleLists, rule_hits, rule_score

log = logging.getLogger(__name__)

FIRST_ENTITIES = tuple(e for e in ENTITIES if e not in LAYER3_ONLY_ENTITIES)
TX_FIELDS = ("tx_id", "customer_id", "card_id", "merchant_id", "channel", "amount_eur", "device_id", "ip", "payee_iban", "country", "lat", "lon")


# --------------------------------------------------------------------------- batch helpers (sync)


def epoch_ms(ts: datetime) -> int:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return round((ts - datetime(1970, 1, 1)).total_seconds() * 1000)


def warm_store(client, transactions: pl.DataFrame, settings: FraudSettings = SETTINGS, batch: int = 2000) -> int:
    """Apply transactions (in time order) to the store with the consumer's update; returns how many were new."""
    script = client.register_script(UPDATE_SCRIPT)
    applied = 0
    rows = transactions.sort("ts", "tx_id").iter_rows(named=True)
    while True:
        chunk = [r for _, r in zip(range(batch), rows)]
        if not chunk:
            return applied
        pipe = client.pipeline(transaction=False)
        for row in chunk:
            keys, args = update_args(row, epoch_ms(row["ts"]), settings)
            script(keys=keys, args=args, client=pipe)
        applied += sum(int(x) for x in pipe.execute())


def publish_lists(client, lists: RuleLists) -> str:
    """Replace the published lists atomically and bump their version."""
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    pipe = client.pipeline(transaction=True)
    for name in LIST_NAMES:
        key = LISTS_KEY_PREFIX + name
        pipe.delete(key)
        values = sorted(getattr(lists, name))
        if values:
            pipe.sadd(key, *values)
    pipe.set(LISTS_VERSION_KEY, version)
    pipe.execute()
    return version


async def read_lists(client) -> tuple[RuleLists, str | None]:
    pipe = client.pipeline(transaction=False)
    pipe.get(LISTS_VERSION_KEY)
    for name in LIST_NAMES:
        pipe.smembers(LISTS_KEY_PREFIX + name)
    version, *sets = await pipe.execute()
    lists = RuleLists(**{name: frozenset(v.decode() for v in members) for name, members in zip(LIST_NAMES, sets)})
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
    cascade: Cascade
    version: str


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
            "tx_id": self.tx_id, "decision": self.decision, "score": self.score, "layer": self.layer, "reasons": self.reasons,
            "model_version": self.model_version, "degraded": self.degraded, "latency_ms": self.latency_ms, "layer_ms": self.layer_ms,
        }


@lru_cache(maxsize=8)
def _layer_names(cascade: Cascade) -> tuple[frozenset[str], frozenset[str]]:
    """Features layer 2 and the rules need, and every feature of layer 3."""
    return frozenset(cascade.layer2_features) | frozenset(RULE_FEATURES), frozenset(cascade.layer3_features)


class Decider:
    """Decides one transaction at a time from the current model, lists and store."""

    def __init__(self, client, model: LoadedModel, lists: RuleLists, settings: FraudSettings = SETTINGS):
        self.client = client
        self.model = model  # replaced as a whole on promotion: a request keeps the one it started with
        self.lists = lists
        self.settings = settings
        self.breaker = Breaker(settings.redis_failures_to_open, settings.redis_retry_after_s)

    async def _read(self, tx: dict, ts_ms: int, entities: tuple[str, ...], state: OnlineState | None = None) -> OnlineState | None:
        if not self.breaker.allows():
            return None
        try:
            async with asyncio.timeout(self.settings.redis_timeout_s):
                pipe = self.client.pipeline(transaction=False)
                plan = read_commands(pipe, tx, ts_ms, entities)
                replies = await pipe.execute() if plan else []
        except Exception as exc:  # timeout, connection refused, reset: decide without the store
            log.debug("feature store unavailable: %r", exc)
            self.breaker.failed()
            return None
        self.breaker.succeeded()
        return parse_replies(plan, replies, state)

    async def decide(self, tx: dict, ts: datetime) -> tuple[Decision, dict[str, float]]:
        """The decision and the features it used."""
        started = time.perf_counter()
        model = self.model
        cascade = model.cascade
        ts_ms = epoch_ms(ts)
        hour = ts.astimezone(UTC).hour if ts.tzinfo else ts.hour
        names2, names3 = _layer_names(cascade)
        state = await self._read(tx, ts_ms, FIRST_ENTITIES)
        degraded = state is None
        t_features = time.perf_counter()
        if degraded:
            features = {**cascade.degraded_defaults, **row_features(tx, ts_ms, hour, None, names3)}
        else:  # layer-3 window features are computed only when layer 3 runs
            features = {**row_features(tx, ts_ms, hour, state, names3), **window_values(state, ts_ms, names2, FIRST_ENTITIES)}
        hits = rule_hits(tx, features, self.lists, self.settings)
        rscore = rule_score(hits, self.settings)
        t_rules = time.perf_counter()
        layer_ms = {"features": (t_features - started) * 1e3, "rules": (t_rules - t_features) * 1e3}
        if rscore >= cascade.rule_block_threshold:
            score, layer = 1.0, 1
        else:
            features["rule_score"] = rscore
            x2 = np.array([[features.get(n, cascade.degraded_defaults.get(n, 0.0)) for n in cascade.layer2_features]])
            score = float(cascade.layer2.predict(x2, num_threads=1)[0])
            layer = 2
            t_l2 = time.perf_counter()
            layer_ms["layer2"] = (t_l2 - t_rules) * 1e3
            low, high = cascade.band
            if not degraded and low <= score <= high:
                state = await self._read(tx, ts_ms, LAYER3_ONLY_ENTITIES, state)
                if state is not None:
                    features.update(window_values(state, ts_ms, names3 - names2, tuple(ENTITIES)))
                    x3 = np.array([[features.get(n, 0.0) for n in cascade.layer3_features]])
                    score = float(cascade.layer3.inplace_predict(x3)[0])
                    layer = 3
                    layer_ms["layer3"] = (time.perf_counter() - t_l2) * 1e3
                else:
                    degraded = True
        if layer == 1 or score >= cascade.block_threshold:
            decision = "block"
        elif score >= cascade.review_threshold:
            decision = "review"
        else:
            decision = "approve"
        reasons = [f"rule:{h}" for h in hits]
        if degraded:
            reasons.append("degraded:feature_store_unavailable")
        latency = (time.perf_counter() - started) * 1e3
        return Decision(tx["tx_id"], decision, round(score, 6), layer, reasons, model.version, degraded, round(latency, 3), layer_ms), features


# --------------------------------------------------------------------------- events


def event_fields(tx: dict, ts_ms: int, decision: Decision, features: dict[str, float], layer2_features: tuple[str, ...]) -> dict[str, str]:
    out = {k: "" if tx.get(k) is None else str(tx[k]) for k in TX_FIELDS}
    out.update(
        ts_ms=str(ts_ms), decision=decision.decision, score=repr(decision.score), layer=str(decision.layer),
        degraded="1" if decision.degraded else "0", model_version=decision.model_version, latency_ms=repr(decision.latency_ms),
        rule_hits=",".join(r.removeprefix("rule:") for r in decision.reasons if r.startswith("rule:")),
        decided_at=str(round(time.time() * 1000)),
        features=json.dumps({n: features.get(n) for n in layer2_features if n in features}),
    )
    return out


def tx_from_event(fields: dict[str, str]) -> tuple[dict, int]:
    tx = {k: (fields.get(k) or None) for k in TX_FIELDS}
    tx["amount_eur"] = float(tx["amount_eur"])
    for k in ("lat", "lon"):
        tx[k] = float(tx[k]) if tx[k] is not None else None
    return tx, int(fields["ts_ms"])


class EventPublisher:
    """Appends events to the stream in the background; keeps them while the stream is away."""

    def __init__(self, stream: EventStream, spool_dir: Path, settings: FraudSettings = SETTINGS):
        self.stream = stream
        self.spool_dir = spool_dir
        self.settings = settings
        self.buffer: deque[dict[str, str]] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.published = 0
        self.stopping = False

    def put(self, fields: dict[str, str]) -> None:
        self.buffer.append(fields)
        self.wake.set()

    def start(self) -> None:
        for path in sorted(self.spool_dir.glob("*.jsonl")) if self.spool_dir.exists() else []:
            claimed = path.with_suffix(f".{uuid.uuid4().hex}.claimed")
            try:
                path.rename(claimed)  # one worker process of several takes each file
            except FileNotFoundError:
                continue
            with claimed.open() as f:
                self.buffer.extend(json.loads(line) for line in f if line.strip())
            claimed.unlink()
        self.task = asyncio.create_task(self._run())

    async def flush_once(self) -> int:
        batch = [self.buffer[i] for i in range(min(len(self.buffer), self.settings.publish_batch))]
        if not batch:
            return 0
        await self.stream.append(batch)
        for _ in batch:
            self.buffer.popleft()
        self.published += len(batch)
        return len(batch)

    async def _run(self) -> None:
        # Stopped by a flag, not by cancellation: a call cancelled midway can hang the client.
        while not self.stopping:
            if not self.buffer:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                await self.flush_once()
            except Exception as exc:  # stream away: keep the events and retry
                log.debug("publish failed, %d events kept: %r", len(self.buffer), exc)
                await asyncio.sleep(0.1)

    async def stop(self, timeout_s: float = 3.0) -> int:
        """Flush what can be flushed, spool the rest to disk; returns how many were spooled."""
        self.stopping = True
        self.wake.set()
        if self.task is not None:
            await asyncio.wait([self.task], timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.buffer and time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    await self.flush_once()
            except Exception:
                break
        spooled = len(self.buffer)
        if spooled:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.spool_dir / f"{uuid.uuid4().hex}.tmp"
            tmp.write_text("".join(json.dumps(e) + "\n" for e in self.buffer))
            tmp.rename(tmp.with_suffix(".jsonl"))
            self.buffer.clear()
        return spooled


# --------------------------------------------------------------------------- consumers


class StreamConsumer:
    """One consumer of a group: first what the group was delivered but did not acknowledge
    (a restart after a crash), then new events."""

    group = ""

    def __init__(self, stream: EventStream, name: str = "c1", settings: FraudSettings = SETTINGS):
        self.stream = stream
        self.name = name
        self.settings = settings
        self.processed = 0
        self.stopping = False

    async def ensure_group(self) -> None:
        await self.stream.ensure_group(self.group)

    async def replay_from(self, event_id: str) -> None:
        """Deliver the stream again from `event_id` (idempotent: already-applied events change nothing)."""
        await self.stream.replay_from(self.group, event_id)

    async def read(self, block_ms: int | None = None) -> list[Event]:
        return await self.stream.read(self.group, self.name, self.settings.consumer_batch, block_ms)

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
            except Exception as exc:  # stream away (or Redis restarted empty: no group) or a bad batch: retry after a pause
                log.debug("%s consumer: %r", self.group, exc)
                await asyncio.sleep(0.2)
                try:
                    await self.ensure_group()
                except Exception:
                    pass


def event_stream(redis_client, settings: FraudSettings = SETTINGS) -> EventStream:
    """Kafka when LAKEHOUSE_KAFKA_BOOTSTRAP is set, otherwise a Redis Stream on `redis_client`."""
    bootstrap = fraud_serving_env()["kafka_bootstrap"]
    if bootstrap:
        return KafkaEventStream(bootstrap, KAFKA_TOPIC, key_field="customer_id", partitions=settings.kafka_partitions)
    return RedisEventStream(redis_client, STREAM_KEY, settings.stream_maxlen)


class FeatureConsumer(StreamConsumer):
    """Applies each event to the feature store (at least once; the update skips known ids)."""

    group = FEATURES_GROUP

    def __init__(self, stream: EventStream, client, name: str = "c1", settings: FraudSettings = SETTINGS):
        super().__init__(stream, name, settings)
        self.client = client
        self.script = client.register_script(UPDATE_SCRIPT)

    async def apply(self, messages: list[Event]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for _, fields in messages:
            tx, ts_ms = tx_from_event(fields)
            keys, args = update_args(tx, ts_ms, self.settings)
            await self.script(keys=keys, args=args, client=pipe)
        await pipe.execute()

    async def handle(self, messages) -> None:
        await self.apply(messages)


DECISION_LOG_SCHEMA = {
    "tx_id": pl.String, "ts": pl.Datetime("ms"), "customer_id": pl.String, "card_id": pl.String, "merchant_id": pl.String,
    "channel": pl.String, "amount_eur": pl.Float64, "device_id": pl.String, "ip": pl.String, "payee_iban": pl.String,
    "country": pl.String, "lat": pl.Float64, "lon": pl.Float64, "decision": pl.String, "score": pl.Float64, "layer": pl.Int64,
    "degraded": pl.Boolean, "model_version": pl.String, "latency_ms": pl.Float64, "rule_hits": pl.String,
    "decided_at": pl.Datetime("ms"), "features": pl.String, "stream_id": pl.String,
}


def decision_rows(messages: list[Event]) -> pl.DataFrame:
    rows = []
    for mid, f in messages:
        row = {k: (f.get(k) or None) for k in DECISION_LOG_SCHEMA if k not in ("ts", "stream_id", "degraded")}
        row.update(ts=int(f["ts_ms"]), degraded=f.get("degraded") == "1", stream_id=mid, decided_at=int(f["decided_at"]))
        rows.append(row)
    raw_schema = {k: pl.Int64 if k in ("ts", "decided_at") else pl.Boolean if k == "degraded" else pl.String for k in DECISION_LOG_SCHEMA}
    df = pl.DataFrame(rows, schema=raw_schema)
    return df.select(
        pl.col(k).cast(pl.Int64).cast(t) if isinstance(t, pl.Datetime) else pl.col(k).cast(t) for k, t in DECISION_LOG_SCHEMA.items()
    )


class DecisionLogConsumer(StreamConsumer):
    """Writes each batch of events as a Parquet part of its day, then acknowledges it.

    A crash between the write and the acknowledgement writes the batch again; readers
    keep one row per transaction id. Reads are larger than the feature group's and, after a
    read that was not full, the consumer waits a moment so that parts stay few and big (a
    part costs ~2 ms of CPU to build and write whatever its size: 20 events ~2 ms, 2,000 ~15 ms).
    """

    group = DECISION_LOG_GROUP

    def __init__(self, stream: EventStream, parts_root: Path, name: str = "c1", settings: FraudSettings = SETTINGS):
        super().__init__(stream, name, replace(settings, consumer_batch=settings.decision_log_batch))
        self.parts_root = parts_root

    async def handle(self, messages) -> None:
        # Building and writing Parquet takes milliseconds: off the event loop the service shares.
        await asyncio.to_thread(self.write, messages)
        if len(messages) < self.settings.consumer_batch and not self.stopping:
            await asyncio.sleep(self.settings.decision_log_wait_s)  # written, acknowledged after the wait

    def write(self, messages) -> None:
        df = decision_rows(messages)
        for (day,), part in df.with_columns(day=pl.col("ts").dt.date()).group_by("day"):
            folder = self.parts_root / f"day={day.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{part['stream_id'].min()}-{part['stream_id'].max()}".replace("-", "_")
            tmp = folder / f"{name}.{uuid.uuid4().hex}.tmp"
            part.drop("day").write_parquet(tmp)
            tmp.rename(folder / f"{name}.parquet")


def read_decision_log(parts_root: Path, day: str | date) -> pl.DataFrame:
    """One day of the decision log: every part, one row per transaction."""
    files = sorted((parts_root / f"day={day}").glob("*.parquet"))
    if not files:
        return pl.DataFrame(schema=DECISION_LOG_SCHEMA)
    df = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files])
    return df.unique("tx_id", keep="first").sort("ts", "tx_id")
