"""An append-only event stream read by consumer groups, at least once: Redis Streams by
default, Kafka where a user has Kafka, behind one interface.

Events are flat str -> str mappings. Every consumer of a group reads what the group was
delivered but did not acknowledge first (a restart after a crash), then new events; it
acknowledges a batch only after handling it, so handlers must be idempotent. A group can be
rewound to replay the stream from any event id ("0": from the beginning).

Event ids: Redis's own (`<ms>-<seq>`); on Kafka `<partition>-<offset>`. Kafka keeps order
per partition only, so events are keyed by `key_field` (the fraud case keys by customer:
one customer's events stay in order).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Protocol

Event = tuple[str, dict[str, str]]


class EventStream(Protocol):
    async def append(self, events: Sequence[dict[str, str]]) -> None: ...

    async def append_encoded(self, events: Sequence[bytes]) -> None:
        """Events already encoded as JSON objects (a spool's lines), appended as they are."""
        ...

    async def ensure_group(self, group: str) -> None: ...

    async def read(self, group: str, consumer: str, count: int, block_ms: int | None = None) -> list[Event]: ...

    async def ack(self, group: str, ids: Sequence[str]) -> None: ...

    async def replay_from(self, group: str, event_id: str) -> None: ...

    async def caught_up(self, groups: Sequence[str]) -> bool:
        """Every group has been delivered every event appended so far and acknowledged it."""
        ...

    async def aclose(self) -> None: ...


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class RedisEventStream:
    """A Redis Stream (XADD capped at about `maxlen`) with XREADGROUP consumer groups."""

    def __init__(self, client, key: str, maxlen: int):
        self.client = client
        self.key = key
        self.maxlen = maxlen

    async def append(self, events: Sequence[dict[str, str]]) -> None:
        await self.append_encoded([json.dumps(fields).encode() for fields in events])

    async def append_encoded(self, events: Sequence[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for line in events:
            # One JSON field, not one stream field per event field: a tenth of the arguments to
            # pack, send and parse on the service's hot path.
            pipe.xadd(self.key, {"event": line}, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def ensure_group(self, group: str) -> None:
        try:
            await self.client.xgroup_create(self.key, group, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, group: str, consumer: str, count: int, block_ms: int | None = None) -> list[Event]:
        for start in ("0", ">"):  # this consumer's pending events, then new ones
            reply = await self.client.xreadgroup(
                group, consumer, {self.key: start}, count=count, block=block_ms if start == ">" else None
            )
            events = [
                (_text(mid), json.loads(next(iter(f.values()))))
                for _, entries in reply or []
                for mid, f in entries
                if f
            ]
            if events:
                return events
        return []

    async def ack(self, group: str, ids: Sequence[str]) -> None:
        await self.client.xack(self.key, group, *ids)

    async def replay_from(self, group: str, event_id: str) -> None:
        await self.ensure_group(group)
        await self.client.xgroup_setid(self.key, group, event_id)

    async def caught_up(self, groups: Sequence[str]) -> bool:
        # The groups' `lag` is not used: Redis cannot always compute it (e.g. after an AOF reload).
        try:
            last = _decode(await self.client.xinfo_stream(self.key)).get("last-generated-id")
            info = {g["name"]: g for g in map(_decode, await self.client.xinfo_groups(self.key))}
        except Exception:
            return False
        return all(g in info and int(info[g]["pending"]) == 0 and info[g]["last-delivered-id"] == last for g in groups)

    async def aclose(self) -> None:
        """The client belongs to the caller."""


class KafkaEventStream:
    """A Kafka topic (created with `partitions` if missing) read by Kafka consumer groups.

    `read` returns at most `count` events; `ack` commits each partition's offset past the
    acknowledged events. A read that follows an unacknowledged one first rewinds to the
    committed offsets, so a failed batch is delivered again as on Redis. The group's consumer
    is created on first use and waits until the group gave it partitions (up to `timeout_s`,
    which must exceed the session timeout when a crashed consumer is being replaced).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        key_field: str,
        partitions: int = 4,
        timeout_s: float = 10.0,
        session_timeout_ms: int = 10_000,
    ):
        self.bootstrap = bootstrap
        self.session_timeout_ms = session_timeout_ms  # a crashed consumer's partitions move to others after this
        self.topic = topic
        self.key_field = key_field
        self.partitions = partitions
        self.timeout_s = timeout_s
        self.producer = None
        self.consumers: dict[str, object] = {}
        self.unacked: set[str] = set()
        self.topic_ready = False

    async def _ensure_topic(self) -> None:
        if self.topic_ready:
            return
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.timeout_s * 1000))
        await admin.start()
        try:
            if self.topic not in await admin.list_topics():
                try:
                    await admin.create_topics(
                        [NewTopic(self.topic, num_partitions=self.partitions, replication_factor=1)]
                    )
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()
        self.topic_ready = True

    async def append(self, events: Sequence[dict[str, str]]) -> None:
        await self.append_encoded([json.dumps(fields).encode() for fields in events])

    async def append_encoded(self, events: Sequence[bytes]) -> None:
        from aiokafka import AIOKafkaProducer

        if self.producer is None:
            await self._ensure_topic()
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=int(self.timeout_s * 1000)
            )
            await producer.start()
            self.producer = producer
        sent = [
            await self.producer.send(self.topic, line, key=(json.loads(line).get(self.key_field) or "").encode())
            for line in events
        ]
        await asyncio.gather(*sent)  # every event acknowledged by the broker, or an error

    async def _consumer(self, group: str):
        from aiokafka import AIOKafkaConsumer

        if group not in self.consumers:
            await self._ensure_topic()
            consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=int(self.timeout_s * 1000),
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=self.session_timeout_ms // 10,
                rebalance_timeout_ms=self.session_timeout_ms // 3,
            )
            await consumer.start()
            async with asyncio.timeout(self.timeout_s):
                while not consumer.assignment():
                    await asyncio.sleep(0.02)
            self.consumers[group] = consumer
        return self.consumers[group]

    async def _rewind_to_committed(self, consumer) -> None:
        beginning = await consumer.beginning_offsets(list(consumer.assignment()))
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            consumer.seek(tp, beginning[tp] if committed is None else committed)

    async def ensure_group(self, group: str) -> None:
        await self._consumer(group)

    async def _available(self, reader, count: int) -> dict:
        """Without blocking: what the log holds past this consumer's position (fetches are
        asynchronous, so an empty answer counts only once every partition is at its end)."""
        async with asyncio.timeout(self.timeout_s):
            while True:
                if batches := await reader.getmany(timeout_ms=50, max_records=count):
                    return batches
                positions = {tp: (reader.highwater(tp), await reader.position(tp)) for tp in reader.assignment()}
                if all(end is not None and position >= end for end, position in positions.values()):
                    return {}

    async def read(self, group: str, consumer: str, count: int, block_ms: int | None = None) -> list[Event]:
        reader = await self._consumer(group)
        if group in self.unacked:
            await self._rewind_to_committed(reader)
            self.unacked.discard(group)
        batches = (
            await reader.getmany(timeout_ms=block_ms, max_records=count)
            if block_ms
            else await self._available(reader, count)
        )
        events = [
            (f"{tp.partition}-{m.offset}", json.loads(m.value)) for tp, records in batches.items() for m in records
        ]
        if events:
            self.unacked.add(group)
        return events

    async def ack(self, group: str, ids: Sequence[str]) -> None:
        from aiokafka import TopicPartition

        past: dict[int, int] = {}
        for event_id in ids:
            partition, offset = map(int, event_id.split("-"))
            past[partition] = max(past.get(partition, 0), offset + 1)
        await self.consumers[group].commit({TopicPartition(self.topic, p): o for p, o in past.items()})
        self.unacked.discard(group)

    async def replay_from(self, group: str, event_id: str) -> None:
        """ "0" rewinds every partition to its first event; `<partition>-<offset>` one partition."""
        from aiokafka import TopicPartition

        reader = await self._consumer(group)
        if event_id == "0":
            offsets = await reader.beginning_offsets(list(reader.assignment()))
        else:
            partition, offset = map(int, event_id.split("-"))
            offsets = {TopicPartition(self.topic, partition): offset}
        await reader.commit(offsets)
        await self._rewind_to_committed(reader)
        self.unacked.discard(group)

    async def caught_up(self, groups: Sequence[str]) -> bool:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        for group in groups:
            # Assigned by hand, this probe reads the group's offsets without joining the group.
            # The log end offset is a fetch's high watermark (not ListOffsets: some
            # Kafka-compatible brokers answer it with the last batch's base offset).
            probe = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False, fetch_max_wait_ms=50
            )
            try:
                await probe.start()
                probe.assign(partitions)
                committed = {tp: await probe.committed(tp) or 0 for tp in partitions}
                for tp, offset in committed.items():
                    probe.seek(tp, offset)
                await probe.getmany(timeout_ms=200, max_records=1)
                if any(probe.highwater(tp) is None or committed[tp] < probe.highwater(tp) for tp in partitions):
                    return False
            except Exception:
                return False
            finally:
                await probe.stop()
        return True

    async def aclose(self) -> None:
        for client in [self.producer, *self.consumers.values()]:
            if client is not None:
                await client.stop()
        self.producer, self.consumers = None, {}
