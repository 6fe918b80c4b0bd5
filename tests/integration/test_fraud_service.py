"""POST /fraud/decisions and /fraud/labels in the shared app against a real Redis: auth,
validation (event times, non-finite numbers, no echo), degradation when Redis is down or slow,
a store that lost its data, hot reload on promotion, a decision log that survives restarts and
kill -9 (the on-disk spool), and labels that reach the store."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest
import redis

from lakehouse.common import promotion
from lakehouse.common.event_stream import KafkaEventStream
from lakehouse.common.lake import Lake
from lakehouse.common.local_servers import RedisServer, free_port
from lakehouse.common.registry import CHAMPION
from lakehouse.fraud.compiled_trees import CompiledTrees
from lakehouse.fraud.features_online import EPOCH_KEY, history_key, seen_key
from lakehouse.fraud.features_registry import DAY_MS
from lakehouse.fraud.online import STREAM_KEY, WARMING_KEY, epoch_ms, read_decision_log
from lakehouse.fraud.settings import CASE, FraudSettings
from tests.conftest import ROOT
from tests.integration.fraud_helpers import (
    KEY,
    LIVE_DAY,
    TINY,
    replay_settings,
    request_body,
    running_service,
    tiny_transactions,
    train_and_register,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SETTINGS = FraudSettings()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("fraud-service")
    tx = tiny_transactions()
    history = tx.filter(tx["ts"].dt.date().cast(str) < TINY.day_keys[-1])
    lake = Lake(str(home / "lake"))
    for (day,), part in history.with_columns(day=pl.col("ts").dt.date().cast(str)).group_by("day"):
        lake.write(part.drop("day"), CASE, "transactions", ("day", day))  # what a warm-up reads
    registry, version = train_and_register(home, tx)
    live = [
        request_body(r)
        for r in tx.filter(tx["ts"].dt.date().cast(str) == TINY.day_keys[-1]).head(400).iter_rows(named=True)
    ]
    return home, registry, version, tx, live


def _unique(body: dict, tag: str) -> dict:
    return {**body, "tx_id": f"{body['tx_id']}-{tag}"}


async def post_all(client, bodies) -> list[int]:
    return [(await client.post("/fraud/decisions", json=b)).status_code for b in bodies]


async def wait_logged(fraud, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await fraud.drained() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


# Ids the loader refuses (lakehouse.common.ids), each with a field it is tried in first.
REFUSED_IDS = [
    ("customer_id", "../etc"),
    ("merchant_id", "a/b"),
    ("customer_id", "C1\u200b"),  # zero-width space
    ("customer_id", "C1\u202e"),  # right-to-left override
    ("card_id", "K1\x7f"),  # DEL
    ("card_id", "K1\u009b"),  # a C1 control
    ("merchant_id", "\u3164M1"),  # Hangul filler
    ("merchant_id", "\uff0e\uff0e"),  # full-width '..'
    ("tx_id", "a=b"),
    ("ip", " 10.0.0.1"),
    ("category", "bad\x1fcategory"),
    ("payee_iban", "I" * 129),
]


def test_auth_validation_and_a_decision(trained, redis_url):
    home, _, version, _, live = trained

    async def scenario():
        # A generous timeout: this test is about the answer, not about the latency budget.
        async with running_service(home, redis_url, fraud=replay_settings(redis_timeout_s=2.0)) as (client, fraud):
            body = live[0]
            assert (await client.post("/fraud/decisions", json=body, headers={"X-API-Key": "wrong"})).status_code == 401
            bad = [
                {k: v for k, v in body.items() if k != "amount"},
                {**body, "amount": -3},
                {**body, "amount": -0.01},
                {**body, "amount": 1e9},
                {**body, "channel": "cash"},
                {**body, "unexpected": 1},
                {**body, "x" * 60_000: 1},  # an unknown field's name is not echoed either
                {**body, "country": "france"},
                {**body, "merchant_id": "m" * 10_000},
                # strict types: no boolean or text for a number, no number for a time or an id
                {**body, "amount": True},
                {**body, "amount": "3.5"},
                {**body, "lat": False, "lon": 2.0},
                {**body, "ts": 1_700_000_000},
                {**body, "customer_id": 42},
                # the loader's id rule
                *(
                    {**body, field: value}
                    for first, value in REFUSED_IDS
                    for field in dict.fromkeys((first, "customer_id", "merchant_id", "tx_id", "device_id"))
                ),
            ]
            for b in bad:
                response = await client.post("/fraud/decisions", json=b)
                assert response.status_code == 422, b
                assert response.json()["detail"][0]["loc"][0] == "body"
                assert len(response.content) < 1000 and "x" * 50 not in response.text and "m" * 50 not in response.text
            for label in (
                {"tx_id": "../etc", "ts": body["ts"], "merchant_id": body["merchant_id"]},
                {"tx_id": "t1", "ts": body["ts"], "merchant_id": "M1\u200b"},
                {"tx_id": "t1", "ts": body["ts"], "merchant_id": body["merchant_id"], "is_fraud": "yes"},
                {"tx_id": "t1", "ts": body["ts"], "merchant_id": body["merchant_id"], "is_fraud": 1},
            ):
                assert (await client.post("/fraud/labels", json=label)).status_code == 422, label
            zero = await client.post("/fraud/decisions", json={**body, "tx_id": "auth-check", "amount": 0})
            assert zero.status_code == 200  # an authorisation check: zero is a valid amount
            composed = await client.post("/fraud/decisions", json={**body, "tx_id": "Cafe\u0301-1"})
            assert composed.status_code == 200 and composed.json()["tx_id"] == "Caf\u00e9-1"  # stored in NFC
            await wait_logged(fraud)
            keys = b"\n".join(redis.Redis.from_url(redis_url).keys("fraud:*")).decode("utf-8", "replace")
            assert "fraud:seen:Caf\u00e9-1" in keys and "fraud:seen:auth-check" in keys
            assert not any(value in keys for _, value in REFUSED_IDS)
            logged = read_decision_log(Lake(str(home / "lake")), body["ts"][:10])
            assert not logged.filter(
                pl.any_horizontal(pl.col(c).is_in([v for _, v in REFUSED_IDS]) for c in ("tx_id", "customer_id"))
            ).height
            # the app's body limit (64 KB by default) holds on the hot route, before the key is checked
            huge = json.dumps({**body, "merchant_id": "m" * 100_000})
            for headers in ({}, {"X-API-Key": "wrong"}):
                response = await client.post(
                    "/fraud/decisions", content=huge, headers={"Content-Type": "application/json", **headers}
                )
                assert response.status_code == 413 and len(response.content) < 200
            ok = await client.post("/fraud/decisions", json=body)
            assert ok.status_code == 200
            out = ok.json()
            assert out["decision"] in ("approve", "review", "block") and out["layer"] in (1, 2, 3)
            assert out["model_version"] == version and out["degraded"] is False and out["latency_ms"] > 0
            # both layers are scored by their compiled trees (the libraries' probabilities, checked at load)
            model = fraud.decider.model
            assert all(isinstance(getattr(m, "booster", m), CompiledTrees) for m in (model.layer2, model.layer3))
            ready = await client.get("/ready")
            assert ready.status_code == 200 and ready.json()["cases"]["fraud"]["model_version"] == version
            assert ready.json()["cases"]["fraud"]["feature_store"] == "ok"
            docs = (await client.get("/openapi.json")).json()
            assert "amount" in docs["components"]["schemas"]["TransactionIn"]["properties"]

    asyncio.run(scenario())


def test_non_finite_numbers_answer_422_never_500(trained, redis_url):
    home, _, _, _, live = trained

    async def scenario():
        async with running_service(home, redis_url) as (client, _):
            for field in ("amount", "lat", "customer_lon"):
                rest = json.dumps({k: v for k, v in live[1].items() if k != field})
                for token in ("NaN", "Infinity", "-Infinity", "1e400"):
                    text = rest[:-1] + f', "{field}": {token}}}'
                    response = await client.post(
                        "/fraud/decisions", content=text, headers={"Content-Type": "application/json"}
                    )
                    assert response.status_code == 422, (field, token, response.text)
                    assert response.json()["detail"][0]["loc"] == ["body", field]

    asyncio.run(scenario())


def test_event_times_are_checked_against_the_service_clock(trained, redis_url):
    home, _, _, _, live = trained
    first = live[0]
    lake = Lake(str(home / "lake"))

    async def scenario():
        async with running_service(home, redis_url, fraud=replay_settings(future_tolerance_s=300)) as (client, fraud):

            def at(body: dict, ts, tag: str) -> dict:
                return {**_unique(body, tag), "ts": ts.isoformat() if hasattr(ts, "isoformat") else ts}

            clock = fraud.clock.now_ms()
            assert clock == epoch_ms(LIVE_DAY) or abs(clock - epoch_ms(LIVE_DAY)) < 60_000
            start = LIVE_DAY
            refused = {
                "9999-12-31T00:00:00": "ahead of the service clock",
                (start + timedelta(hours=2)).isoformat(): "ahead of the service clock",
                "0001-01-01T00:00:00": "older than the longest feature window",
                (start - timedelta(days=31)).isoformat(): "older than the longest feature window",
            }
            for ts, reason in refused.items():
                response = await client.post("/fraud/decisions", json=at(first, ts, "refused"))
                assert response.status_code == 422 and reason in response.json()["detail"][0]["msg"], (
                    ts,
                    response.text,
                )
            # within the tolerance ahead, then out of order: both decided
            ahead = await client.post("/fraud/decisions", json=at(first, start + timedelta(minutes=4), "ahead"))
            late = await client.post("/fraud/decisions", json=at(first, start + timedelta(minutes=1), "late"))
            old = await client.post("/fraud/decisions", json=at(first, start - timedelta(days=3), "old"))
            assert ahead.status_code == late.status_code == old.status_code == 200
            assert fraud.clock.now_ms() >= epoch_ms(
                start + timedelta(minutes=4)
            )  # the replay clock moved with the accepted payment
            await wait_logged(fraud)
        # nothing dated 9999 or 0001 reached the lake
        days = lake.partitions(CASE, "decision_log_parts", "day")
        assert days and all("2026-11-01" <= d <= TINY.day_keys[-1] for d in days)

    asyncio.run(scenario())


def test_the_wall_clock_in_production(trained, redis_url):
    home, _, _, _, live = trained

    async def scenario():
        async with running_service(home, redis_url, fraud=FraudSettings()) as (client, _):
            now = datetime.now(UTC)
            undated = {k: v for k, v in _unique(live[2], "now").items() if k != "ts"}  # no ts: now
            assert (await client.post("/fraud/decisions", json=undated)).status_code == 200
            for ts in (now - timedelta(days=40), now + timedelta(hours=1)):
                response = await client.post(
                    "/fraud/decisions", json={**_unique(live[3], str(ts.timestamp())), "ts": ts.isoformat()}
                )
                assert response.status_code == 422, ts

    asyncio.run(scenario())


def test_redis_down_or_slow_degrades_without_errors_and_recovers(trained):
    home, _, _, _, live = trained

    # Reads give up after 0.5 s, not the production 15 ms: a busy machine stretches a healthy read past 15 ms,
    # and the test is about a store that is down or paused, not about the budget.
    fraud_settings = replay_settings(redis_timeout_s=0.5)

    async def scenario(server: RedisServer):
        async with running_service(home, server.url, fraud=fraud_settings) as (client, _):
            await client.post("/fraud/decisions", json=_unique(live[0], "warm"))  # opens the Redis connection
            up = [(await client.post("/fraud/decisions", json=_unique(b, "up"))).json() for b in live[:10]]
            assert not any(d["degraded"] for d in up)
            server.stop()
            down = [await client.post("/fraud/decisions", json=_unique(b, "down")) for b in live[10:60]]
            assert all(r.status_code == 200 for r in down), [
                (r.status_code, r.text[:300]) for r in down if r.status_code != 200
            ][:3]
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
            # Slow: every client paused for 2 s; reads give up after the timeout.
            redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", "2000", "ALL")
            slow = await client.post("/fraud/decisions", json=_unique(live[61], "slow"))
            assert slow.status_code == 200 and slow.json()["degraded"]

    with RedisServer() as server:
        asyncio.run(scenario(server))


def test_a_store_that_lost_its_data_is_reported_flagged_and_warmed_again(trained):
    home, _, _, _, live = trained
    fraud_settings = replay_settings(redis_timeout_s=2.0)

    async def scenario(server: RedisServer):
        store = redis.Redis.from_url(server.url)
        async with running_service(home, server.url, fraud=fraud_settings) as (client, fraud):
            assert store.exists(EPOCH_KEY)  # an empty store at start: warmed from the lake before serving
            profiles = len(store.keys("fraud:p:*"))
            assert profiles > 100
            before = (await client.post("/fraud/decisions", json=_unique(live[5], "before"))).json()
            assert not before["degraded"]
            chargeback = {
                "tx_id": "chargeback-1",
                "ts": live[0]["ts"],
                "merchant_id": live[0]["merchant_id"],
                "category": live[0]["category"],
            }
            assert (await client.post("/fraud/labels", json=chargeback)).status_code == 202
            await wait_logged(fraud)
            store.flushall()  # a Redis restarted without persistence
            lost = (await client.post("/fraud/decisions", json=_unique(live[6], "lost"))).json()
            assert lost["degraded"] and "degraded:feature_store_lost" in lost["reasons"]
            probe = await client.get("/ready")
            assert probe.status_code == 503
            assert probe.json()["cases"]["fraud"]["feature_store"] in ("lost", "warming")
            await ready_again(client)
            assert store.exists(EPOCH_KEY)
            after = (await client.post("/fraud/decisions", json=_unique(live[7], "after"))).json()
            assert not after["degraded"]
            assert len(store.keys("fraud:p:*")) >= profiles  # the history and the decision log are back
            assert store.exists(seen_key(before["tx_id"]))  # ... the decision made before the loss included
            assert store.exists("fraud:label:chargeback-1")  # ... and the label that came through the stream
            assert (await client.get("/ready")).json()["cases"]["fraud"]["feature_store"] == "ok"
        store.close()

    with RedisServer() as server:
        asyncio.run(scenario(server))


async def ready_again(client, timeout_s: float = 60) -> list[str]:
    """Probe /ready until it answers 200; returns the feature store states seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = await client.get("/ready")
        seen.append(probe.json()["cases"]["fraud"]["feature_store"])
        if probe.status_code == 200:
            assert seen[-1] == "ok" and probe.json()["ready"] is True
            return seen
        assert probe.json()["ready"] is False and seen[-1] != "ok"
        await asyncio.sleep(0.05)
    raise AssertionError(f"/ready never answered 200 again: {seen[-5:]}")


def test_readiness_finds_a_flushed_store_without_traffic_and_outlives_a_dead_warmer(trained):
    home, _, _, _, _ = trained

    async def scenario(server: RedisServer):
        store = redis.Redis.from_url(server.url)
        async with running_service(home, server.url, fraud=replay_settings(redis_timeout_s=2.0)) as (client, fraud):
            profiles = len(store.keys("fraud:p:*"))
            assert (await client.get("/ready")).status_code == 200
            store.flushall()  # no decision after this: only the probes can notice
            probe = await client.get("/ready")
            assert probe.status_code == 503 and probe.json()["cases"]["fraud"]["feature_store"] == "lost"
            await ready_again(client)
            assert store.exists(EPOCH_KEY) and len(store.keys("fraud:p:*")) >= profiles
            assert not store.exists(WARMING_KEY)  # released by the warmer

            # Another process took the warm-up and died: its key expires, this one takes over.
            store.flushall()
            store.set(WARMING_KEY, "a-process-that-died", ex=2)
            probe = await client.get("/ready")
            assert probe.status_code == 503 and probe.json()["cases"]["fraud"]["feature_store"] == "warming"
            assert "warming" in await ready_again(client)
            assert store.exists(EPOCH_KEY) and len(store.keys("fraud:p:*")) >= profiles

            # Redis away: not ready, and ready again when it is back.
            server.stop()
            probe = await client.get("/ready")
            assert probe.status_code == 503 and probe.json()["cases"]["fraud"]["feature_store"] == "unavailable"
            server.start()  # back empty (no persistence): warmed again
            await ready_again(client)
            assert store.exists(EPOCH_KEY)
        store.close()

    with RedisServer() as server:
        asyncio.run(scenario(server))


async def _answers_until(client, live: list[dict], wanted: str, tag: str) -> tuple[set, list]:
    """Decisions until one comes from `wanted` (30 s at most): the model versions seen and every status."""
    seen, statuses = set(), []
    deadline = time.monotonic() + 30
    i = 0
    while wanted not in seen and time.monotonic() < deadline:
        response = await client.post("/fraud/decisions", json=_unique(live[i % len(live)], f"{tag}{i}"))
        statuses.append(response.status_code)
        if response.status_code == 200:
            seen.add(response.json()["model_version"])
        i += 1
        await asyncio.sleep(0.01)
    return seen, statuses


def test_promotion_and_rollback_are_hot_reloaded_without_dropped_requests(trained, redis_url):
    home, registry, version, tx, live = trained
    name = SETTINGS.cascade.registered_model_name

    async def scenario():
        async with running_service(home, redis_url) as (client, _):
            _, new_version = await asyncio.to_thread(train_and_register, home, tx, True)
            assert registry.alias_version(name, CHAMPION) == new_version
            seen, statuses = await _answers_until(client, live, new_version, "promoted")
            assert set(statuses) == {200} and seen == {version, new_version}

            promotion.rollback(registry, name, version, "the new version blocks too many good payments")
            assert registry.alias_version(name, CHAMPION) == version
            seen, statuses = await _answers_until(client, live, version, "rolled-back")
            assert set(statuses) == {200} and version in seen

    try:
        asyncio.run(scenario())
    finally:  # the module's other tests expect the first champion, whatever happened above
        if registry.alias_version(name, CHAMPION) != version:
            promotion.rollback(registry, name, version, "restoring the module's first champion")


def test_decision_log_keeps_every_decision_across_service_and_redis_restarts(trained):
    home, _, _, _, live = trained
    lake = Lake(str(home / "lake"))
    spool = home / CASE / "spool"

    async def scenario(server: RedisServer):
        first = [_unique(b, "restart-a") for b in live[:40]]
        second = [_unique(b, "restart-b") for b in live[40:65]]
        async with running_service(home, server.url, consumers="off") as (client, _):
            assert set(await post_all(client, first)) == {200}
        async with running_service(home, server.url) as (_, fraud):  # consumers resume from the stream
            await wait_logged(fraud)
        server.stop()
        async with running_service(home, server.url, consumers="off") as (client, _):
            assert set(await post_all(client, second)) == {200}  # on disk before each answer
        assert list(spool.glob("*.jsonl"))
        server.start()  # an empty Redis: the spool is all that is left of the second batch
        async with running_service(home, server.url) as (_, fraud):
            await wait_logged(fraud)
        logged = set(read_decision_log(lake, TINY.day_keys[-1])["tx_id"].to_list())
        assert {b["tx_id"] for b in first + second} <= logged
        assert not list(spool.glob("*.jsonl"))

    with RedisServer() as server:
        asyncio.run(scenario(server))


def _serve(home, redis_url: str, port: int, **env) -> subprocess.Popen:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_REDIS_URL": redis_url,
        "LAKEHOUSE_API_KEY": KEY,
        "LAKEHOUSE_SERVING_CASES": CASE,
        "LAKEHOUSE_FRAUD_SERVING__REPLAY_FROM": LIVE_DAY.isoformat(),
        "LAKEHOUSE_FRAUD_SERVING__FUTURE_TOLERANCE_S": "86400",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse.serving", "--port", str(port)], cwd=ROOT, env=environment
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).json()["ready"]:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("the service did not start")


def test_kill_9_with_redis_paused_loses_no_answered_decision(trained):
    home, _, _, _, live = trained
    lake = Lake(str(home / "lake"))
    bodies = [_unique(b, "kill9") for b in live[100:160]]
    with RedisServer() as server:
        port = free_port()
        service = _serve(home, server.url, port)
        try:
            server.process.send_signal(signal.SIGSTOP)  # Redis paused: reads time out, the stream takes nothing
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=10) as client:
                answers = [client.post("/fraud/decisions", json=b) for b in bodies]
            assert all(a.status_code == 200 for a in answers) and all(a.json()["degraded"] for a in answers)
        finally:
            service.kill()  # SIGKILL: no shutdown hook runs
            service.wait()
            server.process.send_signal(signal.SIGCONT)
        assert list((home / CASE / "spool").glob("*.jsonl"))
        service = _serve(home, server.url, port)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                logged = set(read_decision_log(lake, TINY.day_keys[-1])["tx_id"].to_list())
                if {b["tx_id"] for b in bodies} <= logged:
                    break
                time.sleep(0.5)
            assert {b["tx_id"] for b in bodies} <= logged
        finally:
            service.send_signal(signal.SIGINT)
            service.wait(timeout=30)


def test_the_spool_is_bounded_and_refuses_what_it_could_not_log(trained):
    home, _, _, _, live = trained

    async def scenario(server: RedisServer):
        server.stop()  # nothing leaves the spool
        bounded = replay_settings(consumers="off", spool_max_bytes=40_000)
        async with running_service(home, server.url, fraud=bounded) as (client, fraud):
            statuses = [await client.post("/fraud/decisions", json=_unique(b, "bound")) for b in live[200:260]]
            codes = [r.status_code for r in statuses]
            assert 200 in codes and 503 in codes and codes.index(503) > 0
            assert set(codes[codes.index(503) :]) == {
                503
            }  # once full, every decision is refused, none answered unlogged
            assert "spool full" in statuses[-1].json()["detail"]
            assert fraud.publisher.spool.bytes <= 40_000
        server.start()
        async with running_service(home, server.url) as (_, fraud):
            await wait_logged(fraud)

    with RedisServer() as server:
        asyncio.run(scenario(server))


def test_labels_reach_the_store_once_and_only_from_the_past(trained, redis_url):
    home, _, _, tx, _ = trained
    paid = tx.filter(pl.col("ts").dt.date().cast(str) < TINY.day_keys[-1]).row(0, named=True)
    label = {
        "tx_id": f"{paid['tx_id']}-chargeback",
        "ts": paid["ts"].isoformat(),
        "merchant_id": paid["merchant_id"],
        "category": paid["category"],
    }
    bucket = f"f:{epoch_ms(paid['ts']) // DAY_MS}"

    async def scenario():
        async with running_service(home, redis_url) as (client, fraud):
            store = redis.Redis.from_url(redis_url)
            key = history_key("merchant", paid["merchant_id"])
            before = int(store.hget(key, bucket) or 0)
            for _ in range(2):  # sent twice: counted once
                response = await client.post("/fraud/labels", json=label)
                assert response.status_code == 202 and response.json()["accepted"]
            future = await client.post("/fraud/labels", json={**label, "tx_id": "x", "ts": "9999-01-01T00:00:00"})
            assert future.status_code == 422 and "ahead of the service clock" in future.text
            await wait_logged(fraud)
            assert int(store.hget(key, bucket)) == before + 1
            assert int(store.hget(history_key("category", paid["category"]), bucket)) >= 1
            store.close()
        labels = Lake(str(home / "lake")).read_partitions(CASE, "label_log_parts", "day")
        assert label["tx_id"] in labels["tx_id"].to_list()

    asyncio.run(scenario())


def test_service_on_kafka_updates_features_and_logs_every_decision_across_a_restart(trained, redis_url, kafka_broker):
    home, _, _, _, live = trained
    bodies = [_unique(b, "kafka") for b in live[:40]]
    lake = Lake(str(home / "lake"))

    async def scenario():
        on_kafka = {"kafka_bootstrap": kafka_broker.bootstrap}
        async with running_service(home, redis_url, fraud=replay_settings(consumers="off").with_(**on_kafka)) as (
            client,
            fraud,
        ):
            assert isinstance(fraud.stream, KafkaEventStream)
            assert set(await post_all(client, bodies)) == {200}
        async with running_service(home, redis_url, fraud=replay_settings().with_(**on_kafka)) as (
            _,
            fraud,
        ):  # consumers start from the group's committed offsets
            await wait_logged(fraud, timeout_s=60)
            assert await fraud.drained()

    asyncio.run(scenario())
    store = redis.Redis.from_url(redis_url)
    assert all(store.exists(seen_key(b["tx_id"])) for b in bodies)
    assert not store.exists(STREAM_KEY)  # the events went through Kafka only
    store.close()
    logged = set(read_decision_log(lake, TINY.day_keys[-1])["tx_id"].to_list())
    assert {b["tx_id"] for b in bodies} <= logged
