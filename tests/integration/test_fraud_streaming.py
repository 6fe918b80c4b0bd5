"""The online feature path against real Redis: parity with the batch features (labels arriving
early on the stream count only after their delay, as in batch), and an at-least-once consumer
whose crash mid-batch (or a replay) leaves exactly the same store, with the events on a Redis
Stream or on Kafka (a real Kafka-compatible broker)."""

import asyncio
import math
import random
import uuid

import polars as pl
import pytest
import redis.asyncio as aioredis

from lakehouse.common.event_stream import KafkaEventStream, RedisEventStream
from lakehouse.common.lake import Lake
from lakehouse.fraud.features_batch import batch_features
from lakehouse.fraud.features_online import EPOCH_KEY, READ_SCRIPT, first_read, online_features, parse_replies
from lakehouse.fraud.features_registry import ENTITIES, registry_for
from lakehouse.fraud.online import (
    LABEL_LOG_PARTS,
    STREAM_KEY,
    WARM_RUN_PREFIX,
    Decision,
    DecisionLogConsumer,
    FeatureConsumer,
    StoreLostDuringWarmUp,
    epoch_ms,
    event_fields,
    label_fields,
    read_decision_log,
    warm_store,
)
from lakehouse.fraud.settings import CASE, FraudSettings
from lakehouse.fraud.world import WorldConfig, generate_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WORLD = WorldConfig(tx_per_day=1500, days=3, seed=9)
# A one-day label delay and 1-2 day histories, so that three days exercise the label windows.
SETTINGS = FraudSettings(features={"label_delay_days": 1, "history_days": [1, 2]})
REGISTRY = registry_for(SETTINGS)


@pytest.fixture(scope="module")
def transactions():
    return generate_days(WORLD).sort("ts", "tx_id")


def _event(row: dict) -> dict:
    decision = Decision(row["tx_id"], "approve", 0.0, 2, [], "1", False, 0.1)
    return event_fields(row, epoch_ms(row["ts"]), decision, {}, ())


def _events(row: dict) -> list[dict]:
    """The decision event, and right behind it the fraud label (long before its delay has passed)."""
    label = (
        [label_fields(row["tx_id"], epoch_ms(row["ts"]), row["merchant_id"], row["category"], True)]
        if row["is_fraud"]
        else []
    )
    return [_event(row), *label]


async def _snapshot(client) -> dict:
    out = {}
    async for key in client.scan_iter(match="fraud:[wpfh]:*", count=1000):
        if (await client.type(key)) == b"zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await client.hgetall(key)
    return out


def _db(url: str, n: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{n}"


def test_online_features_match_batch_features_on_sampled_transactions(transactions, redis_url):
    batch = batch_features(transactions, REGISTRY)
    names = frozenset(REGISTRY.available(transactions.columns))
    sample = set(random.Random(1).sample(transactions["tx_id"].to_list(), 150))

    async def replay() -> dict[str, dict]:
        client = aioredis.Redis.from_url(redis_url)
        stream = RedisEventStream(client, STREAM_KEY, SETTINGS.serving.stream_maxlen)
        consumer = FeatureConsumer(stream, client, REGISTRY, SETTINGS)
        await consumer.ensure_group()
        online, pending = {}, []
        for row in transactions.iter_rows(named=True):
            if row["tx_id"] in sample:
                if pending:
                    await stream.append([e for r in pending for e in _events(r)])
                pending = []
                await consumer.drain()
                ts_ms = epoch_ms(row["ts"])
                keys, args, plan = first_read(row, ts_ms, tuple(ENTITIES), REGISTRY)
                state = parse_replies(plan, [await client.eval(READ_SCRIPT, len(keys), *keys, *args)], REGISTRY)
                online[row["tx_id"]] = online_features(row, ts_ms, state, names, tuple(ENTITIES), REGISTRY)
            pending.append(row)
        await client.aclose()
        return online

    online = asyncio.run(replay())
    expected = {r["tx_id"]: r for r in batch.filter(pl.col("tx_id").is_in(list(sample))).iter_rows(named=True)}
    assert len(online) == 150 and len(names) > 250
    mismatches = [
        (tx_id, name, value, expected[tx_id][name])
        for tx_id, values in online.items()
        for name, value in values.items()
        if not math.isclose(value, expected[tx_id][name], rel_tol=1e-9, abs_tol=1e-6)
    ]
    assert set(online[next(iter(online))]) == names
    assert mismatches == []
    # the sample exercises the windows: some sampled transactions have history in every kind of window
    assert sum(v["customer_count_1d"] > 0 for v in online.values()) > 50
    assert sum(v["merchant_count_1h"] > 0 for v in online.values()) > 50
    assert sum(v["merchant_hist_count_1d"] > 0 for v in online.values()) > 50
    assert sum(v["category_hist_frauds_1d"] > 0 for v in online.values()) > 20  # labels counted once a day old


@pytest.fixture(params=["redis", "kafka"])
def streams(request, redis_server):
    """A factory of event streams on one backend: `streams(name)` opens (again) the stream `name`."""
    if request.param == "redis":

        def open_stream(name: str, client):
            return RedisEventStream(client, f"test:{name}", SETTINGS.serving.stream_maxlen)
    else:
        broker = request.getfixturevalue("kafka_broker")
        prefix = uuid.uuid4().hex[:8]

        def open_stream(name: str, client):
            return KafkaEventStream(
                broker.bootstrap, f"{prefix}.{name}", key_field="customer_id", partitions=3, session_timeout_ms=3000
            )

    return open_stream


def test_consumer_crash_mid_batch_and_replay_give_the_same_store(transactions, redis_server, streams):
    rows = transactions.head(1200).to_dicts()
    events = [e for r in rows for e in _events(r)]

    async def scenario():
        clean = aioredis.Redis.from_url(_db(redis_server.url, 1))
        crashed = aioredis.Redis.from_url(_db(redis_server.url, 2))
        for client, name in ((clean, "clean"), (crashed, "crashed")):
            await client.flushdb()
            writer = streams(name, client)
            await writer.append(events)
            await writer.aclose()
        consumer = FeatureConsumer(streams("clean", clean), clean, REGISTRY, SETTINGS)
        await consumer.ensure_group()
        assert await consumer.drain() == len(events)
        reference = await _snapshot(clean)
        assert any(k.startswith(b"fraud:h:merchant:") for k in reference)

        first = FeatureConsumer(streams("crashed", crashed), crashed, REGISTRY, SETTINGS)
        await first.ensure_group()
        batch = await first.read()
        await first.apply(batch[: len(batch) // 2])  # the process dies here: half applied, nothing acknowledged
        await first.stream.aclose()
        restarted = FeatureConsumer(
            streams("crashed", crashed), crashed, REGISTRY, SETTINGS
        )  # same group (and name): unacknowledged events come first
        assert await restarted.drain() == len(events)
        assert await _snapshot(crashed) == reference
        assert await restarted.stream.caught_up([restarted.group])

        # replay from the first event: applied ids are skipped, the store does not change
        await restarted.replay_from("0")
        assert not await restarted.stream.caught_up([restarted.group])
        assert await restarted.drain() == len(events)
        assert await _snapshot(crashed) == reference
        # a store lost but a stream kept: a replay rebuilds it exactly
        async for key in crashed.scan_iter(match="fraud:*", count=1000):
            await crashed.delete(key)
        await restarted.replay_from("0")
        await restarted.drain()
        assert await _snapshot(crashed) == reference
        for stream in (consumer.stream, restarted.stream):
            await stream.aclose()
        for client in (clean, crashed):
            await client.flushdb()
            await client.aclose()

    asyncio.run(scenario())


class _FlushedAfterFirstBatch:
    """A client of a real Redis whose data is flushed right after the warm-up's first batch."""

    def __init__(self, client):
        self.client = client
        self.batches = 0

    def __getattr__(self, name):
        return getattr(self.client, name)

    def pipeline(self, **kwargs):
        pipe = self.client.pipeline(**kwargs)
        execute = pipe.execute

        def execute_then_flush():
            replies = execute()
            self.batches += 1
            if self.batches == 1:
                self.client.flushall()
            return replies

        pipe.execute = execute_then_flush
        return pipe


def test_a_store_flushed_during_its_warm_up_is_not_marked_warm(transactions, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    flushed = _FlushedAfterFirstBatch(client)
    with pytest.raises(StoreLostDuringWarmUp):
        warm_store(flushed, transactions, REGISTRY, SETTINGS.serving, batch=500)
    assert flushed.batches >= 2 and not client.exists(EPOCH_KEY)
    assert warm_store(client, transactions, REGISTRY, SETTINGS.serving) > 0  # warmed again: marked warm
    assert client.exists(EPOCH_KEY) and not client.keys(WARM_RUN_PREFIX + "*")
    client.close()


def test_events_with_ids_the_loader_refuses_reach_neither_the_store_nor_the_log(transactions, redis_url, tmp_path):
    rows = transactions.head(3).to_dicts()
    good = _event(rows[0])
    bad = [
        {**_event(rows[1]), "customer_id": "../etc"},
        {**_event(rows[2]), "merchant_id": "M1\u200b"},
        label_fields("T-label", epoch_ms(rows[0]["ts"]), "a=b", None, True),
    ]

    async def scenario():
        client = aioredis.Redis.from_url(redis_url)
        stream = RedisEventStream(client, "test:refused", SETTINGS.serving.stream_maxlen)
        await stream.append([good, *bad])
        lake = Lake(str(tmp_path / "lake"))
        for consumer in (
            FeatureConsumer(stream, client, REGISTRY, SETTINGS),
            DecisionLogConsumer(stream, lake, SETTINGS),
        ):
            await consumer.ensure_group()
            assert await consumer.drain() == 4  # read and acknowledged: a refused event is not retried forever
        keys = [k.decode() async for k in client.scan_iter(match="fraud:*")]
        assert f"fraud:seen:{good['tx_id']}" in keys
        assert not [k for k in keys if "../etc" in k or "\u200b" in k or "a=b" in k or "T-label" in k]
        logged = read_decision_log(lake, str(rows[0]["ts"].date()))
        assert logged["tx_id"].to_list() == [good["tx_id"]]
        assert not lake.partitions(CASE, LABEL_LOG_PARTS, "day")
        await stream.aclose()
        await client.aclose()

    asyncio.run(scenario())


def test_a_store_warmed_from_the_lakes_last_days_holds_each_customers_whole_profile(redis_url, tmp_path):
    """The warm-up applies the days the windows reach (4 here); a customer's count, mean and spread of earlier
    payments cover every loaded day in the batch features the model trains on, so the warm-up seeds them from the
    days before. The fraud replay found a live count of 114 earlier payments where the training saw 2,902."""
    import redis

    from lakehouse.fraud.pipeline import TRANSACTIONS, warm_online_store

    world = generate_days(WorldConfig(tx_per_day=600, days=9, seed=4)).sort("ts", "tx_id")
    days = world["ts"].dt.date().unique().sort().to_list()
    lake = Lake(str(tmp_path / "lake"))
    for day in days[:-1]:
        lake.write(world.filter(pl.col("ts").dt.date() == day), CASE, TRANSACTIONS, ("day", day.isoformat()))
    client = redis.Redis.from_url(redis_url)
    warmed = warm_online_store(lake, client, SETTINGS)
    assert warmed["transactions"] < world.filter(pl.col("ts").dt.date() < days[-1]).height  # a window, not all
    profile = frozenset({"cust_tx_before", "cust_mean_amount", "cust_std_amount", "amount_z"})
    firsts = world.filter(pl.col("ts").dt.date() == days[-1]).unique("customer_id", keep="first", maintain_order=True)
    batch = {r["tx_id"]: r for r in batch_features(world, REGISTRY).iter_rows(named=True)}
    online = {}
    for row in firsts.head(200).iter_rows(named=True):
        ts_ms = epoch_ms(row["ts"])
        keys, args, plan = first_read(row, ts_ms, tuple(ENTITIES), REGISTRY)
        state = parse_replies(plan, [client.eval(READ_SCRIPT, len(keys), *keys, *args)], REGISTRY)
        online[row["tx_id"]] = online_features(row, ts_ms, state, profile, tuple(ENTITIES), REGISTRY)
    client.close()
    mismatches = [
        (tx_id, name, value, batch[tx_id][name])
        for tx_id, values in online.items()
        for name, value in values.items()
        if not math.isclose(value, batch[tx_id][name], rel_tol=1e-9, abs_tol=1e-6)
    ]
    assert mismatches == []
    assert sum(v["cust_tx_before"] > 0 for v in online.values()) > 150
