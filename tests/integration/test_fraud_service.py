"""POST /fraud/decisions in the shared app against a real Redis: auth, validation, degradation
when Redis is down or slow, hot reload on promotion, and a decision log that survives restarts."""

import asyncio
import time

import pytest
import redis

from lakehouse.common.event_stream import KafkaEventStream
from lakehouse.common.local_servers import RedisServer
from lakehouse.common.registry import CHAMPION
from lakehouse.fraud.config import SETTINGS, STREAM_KEY
from lakehouse.fraud.features import seen_key
from lakehouse.fraud.online import read_decision_log
from tests.integration.fraud_helpers import TINY, request_body, running_service, tiny_transactions, train_and_register

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("fraud-service")
    tx = tiny_transactions()
    registry, version = train_and_register(home, tx)
    live = [request_body(r) for r in tx.filter(tx["ts"].dt.date().cast(str) == TINY.day_keys[-1]).head(400).iter_rows(named=True)]
    return home, registry, version, tx, live


def _unique(body: dict, tag: str) -> dict:
    return {**body, "tx_id": f"{body['tx_id']}-{tag}"}


async def post_all(client, bodies) -> list[int]:
    return [(await client.post("/fraud/decisions", json=b)).status_code for b in bodies]


def test_auth_validation_and_a_decision(trained, redis_url):
    home, _, version, _, live = trained

    async def scenario():
        async with running_service(home, redis_url) as (client, _):
            body = live[0]
            assert (await client.post("/fraud/decisions", json=body, headers={"X-API-Key": "wrong"})).status_code == 401
            bad = [
                {k: v for k, v in body.items() if k != "amount_eur"},
                {**body, "amount_eur": -3},
                {**body, "channel": "cash"},
                {**body, "unexpected": 1},
                {**body, "country": "france"},
                {**body, "customer_id": "bad\x1fid"},
            ]
            for b in bad:
                response = await client.post("/fraud/decisions", json=b)
                assert response.status_code == 422, b
                assert response.json()["detail"][0]["loc"][0] == "body"
            ok = await client.post("/fraud/decisions", json=body)
            assert ok.status_code == 200
            out = ok.json()
            assert out["decision"] in ("approve", "review", "block") and out["layer"] in (1, 2, 3)
            assert out["model_version"] == version and out["degraded"] is False and out["latency_ms"] > 0
            ready = await client.get("/ready")
            assert ready.status_code == 200 and ready.json()["cases"]["fraud"]["model_version"] == version

    asyncio.run(scenario())


def test_redis_down_or_slow_degrades_without_errors_and_recovers(trained):
    home, _, _, _, live = trained

    async def scenario(server: RedisServer):
        async with running_service(home, server.url) as (client, _):
            await client.post("/fraud/decisions", json=_unique(live[0], "warm"))  # opens the Redis connection
            up = [(await client.post("/fraud/decisions", json=_unique(b, "up"))).json() for b in live[:10]]
            assert sum(d["degraded"] for d in up) <= 1  # a busy machine may stretch one read past the timeout
            server.stop()
            down = [await client.post("/fraud/decisions", json=_unique(b, "down")) for b in live[10:60]]
            assert all(r.status_code == 200 for r in down)
            assert all(r.json()["degraded"] and r.json()["layer"] in (1, 2) for r in down)
            assert "degraded:feature_store_unavailable" in down[0].json()["reasons"]
            server.start()
            deadline = time.monotonic() + 15
            recovered = None
            for b in live[60:]:
                recovered = (await client.post("/fraud/decisions", json=_unique(b, "back"))).json()
                if not recovered["degraded"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert recovered is not None and not recovered["degraded"]
            # Slow: every client paused for 1 s; reads give up after the timeout.
            redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", "1000", "ALL")
            slow = await client.post("/fraud/decisions", json=_unique(live[-1], "slow"))
            assert slow.status_code == 200 and slow.json()["degraded"]

    with RedisServer() as server:
        asyncio.run(scenario(server))


def test_promotion_is_hot_reloaded_without_dropped_requests(trained, redis_url):
    home, registry, version, tx, live = trained

    async def scenario():
        async with running_service(home, redis_url) as (client, _):
            _, new_version = await asyncio.to_thread(train_and_register, home, tx, False)
            registry.set_alias(SETTINGS.registered_model_name, CHAMPION, new_version)
            seen, statuses = set(), []
            deadline = time.monotonic() + 20
            i = 0
            while new_version not in seen and time.monotonic() < deadline:
                response = await client.post("/fraud/decisions", json=_unique(live[i % len(live)], f"r{i}"))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    seen.add(response.json()["model_version"])
                i += 1
                await asyncio.sleep(0.01)
            assert set(statuses) == {200}
            assert seen == {version, new_version}

    asyncio.run(scenario())
    registry.set_alias(SETTINGS.registered_model_name, CHAMPION, version)


def test_decision_log_keeps_every_decision_across_service_and_redis_restarts(trained, tmp_path):
    home, _, _, _, live = trained
    parts = home / "lake" / "fraud" / "decision_log_parts"
    day = TINY.day_keys[-1]

    async def wait_logged(fraud):
        deadline = time.monotonic() + 20
        while not await fraud.drained() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def scenario(server: RedisServer):
        first = [_unique(b, "restart-a") for b in live[:40]]
        second = [_unique(b, "restart-b") for b in live[40:65]]
        async with running_service(home, server.url, consumers="off") as (client, _):
            assert set(await post_all(client, first)) == {200}
        async with running_service(home, server.url) as (_, fraud):  # consumers resume from the stream
            await wait_logged(fraud)
        server.stop()
        async with running_service(home, server.url, consumers="off") as (client, fraud):
            assert set(await post_all(client, second)) == {200}  # kept in memory, spooled to disk at stop
        assert list((home / "fraud" / "spool").glob("*.jsonl"))
        server.start()  # an empty Redis: the spool is all that is left of the second batch
        async with running_service(home, server.url) as (_, fraud):
            await wait_logged(fraud)
        logged = set(read_decision_log(parts, day)["tx_id"].to_list())
        assert {b["tx_id"] for b in first + second} <= logged
        assert not list((home / "fraud" / "spool").glob("*.jsonl"))

    with RedisServer() as server:
        asyncio.run(scenario(server))


def test_service_on_kafka_updates_features_and_logs_every_decision_across_a_restart(trained, redis_url, kafka_broker, monkeypatch):
    home, _, _, _, live = trained
    monkeypatch.setenv("LAKEHOUSE_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    bodies = [_unique(b, "kafka") for b in live[:40]]

    async def scenario():
        async with running_service(home, redis_url, consumers="off") as (client, fraud):
            assert isinstance(fraud.stream, KafkaEventStream)
            assert set(await post_all(client, bodies)) == {200}
        async with running_service(home, redis_url) as (_, fraud):  # consumers start from the group's committed offsets
            deadline = time.monotonic() + 60
            while not await fraud.drained() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await fraud.drained()

    asyncio.run(scenario())
    store = redis.Redis.from_url(redis_url)
    assert all(store.exists(seen_key(b["tx_id"])) for b in bodies)
    assert not store.exists(STREAM_KEY)  # the events went through Kafka only
    store.close()
    logged = set(read_decision_log(home / "lake" / "fraud" / "decision_log_parts", TINY.day_keys[-1])["tx_id"].to_list())
    assert {b["tx_id"] for b in bodies} <= logged
