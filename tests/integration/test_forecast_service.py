"""The forecast lookup: atomic Redis publication, the endpoint, and 503 (never 500) without its store."""

import threading
from datetime import date

import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient

from lakehouse.common.home import LakehouseHome
from lakehouse.common.local_servers import RedisServer, free_port
from lakehouse.forecast.publish import POINTER, RUN_PREFIX, current, publish
from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

pytestmark = pytest.mark.integration
KEY = {API_KEY_HEADER: "k"}


def _vectors(run: str, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "store_id": [f"north-s{i % 7:03d}" for i in range(n)],
            "sku_id": [f"sku{i:05d}" for i in range(n)],
            "origin": [date(2026, 10, 11)] * n,
            "first_day": [date(2026, 10, 12)] * n,
            "forecast": [[float(len(run))] * 14] * n,
        }
    )


def _app(url: str, tmp_path) -> TestClient:
    return TestClient(
        create_app(ServingSettings(api_key="k", home=LakehouseHome(tmp_path), redis_url=url, cases=("forecast",)))
    )


def test_publication_is_atomic_for_readers(redis_url):
    client = redis.Redis.from_url(redis_url)
    n = 30_000
    first = publish(client, _vectors("a", n), "a")
    assert first["written"] == n and current(client)["run_id"] == "a"
    seen, problems = set(), []
    done = threading.Event()

    def read():
        reader = redis.Redis.from_url(redis_url)
        script = reader.register_script(
            "local r = redis.call('GET', KEYS[1]) if not r then return nil end "
            "return {r, redis.call('HGET', ARGV[2] .. r, ARGV[1])}"
        )
        i = 0
        while not done.is_set():
            i = (i + 7919) % n
            got = script(keys=[POINTER], args=[f"north-s{i % 7:03d}|sku{i:05d}", RUN_PREFIX])
            if got is None or got[1] is None:
                problems.append(i)
            else:
                seen.add(got[0].decode())
        reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    second = publish(client, _vectors("bb", n), "bb")
    done.set()
    thread.join()
    assert not problems, f"{len(problems)} lookups found no forecast during the switch"
    assert second["previous_run"] == "a" and current(client)["run_id"] == "bb"
    assert not client.exists(RUN_PREFIX + "a"), "the previous night is deleted after the switch"
    assert "a" in seen
    client.close()


def test_lookup_endpoint_serves_the_published_vector(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    with _app(redis_url, tmp_path) as http:
        assert http.get("/ready").json()["cases"]["forecast"]["ready"] is False  # nothing published yet
        publish(client, _vectors("night1", 20), "night1")
        ok = http.get("/forecast/stores/north-s003/skus/sku00003", headers=KEY)
        assert ok.status_code == 200
        body = ok.json()
        assert body["origin"] == "2026-10-11" and len(body["forecast"]) == 14 and body["run_id"] == "night1"
        assert http.get("/forecast/stores/north-s003/skus/nope", headers=KEY).status_code == 404
        assert http.get("/forecast/stores/north-s003/skus/sku00003").status_code == 401
        ready = http.get("/ready").json()["cases"]["forecast"]
        assert ready == {"ready": True, "run_id": "night1", "origin": "2026-10-11", "series": 20}
    client.close()


def test_lookup_answers_503_with_a_reason_when_redis_goes_away(tmp_path):
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        publish(client, _vectors("n1", 5), "n1")
        client.close()
        with _app(server.url, tmp_path) as http:
            assert http.get("/forecast/stores/north-s001/skus/sku00001", headers=KEY).status_code == 200
            server.stop()
            down = http.get("/forecast/stores/north-s001/skus/sku00001", headers=KEY)
            assert down.status_code == 503, down.text
            assert "forecast store is unreachable" in down.json()["detail"]
            ready = http.get("/ready")
            assert ready.status_code == 503 and ready.json()["cases"]["forecast"]["ready"] is False


def test_lookup_answers_503_when_redis_never_started(tmp_path):
    with _app(f"redis://127.0.0.1:{free_port()}/0", tmp_path) as http:
        down = http.get("/forecast/stores/north-s001/skus/sku00001", headers=KEY)
        assert down.status_code == 503 and "unreachable" in down.json()["detail"]
