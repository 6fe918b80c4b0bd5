"""The shared online app: API key on every case route, health, readiness, OpenAPI."""

import json
from pathlib import Path

import pytest
from fastapi import APIRouter, HTTPException
from fastapi.testclient import TestClient

from lakehouse.common.home import LakehouseHome
from lakehouse.serving.app import API_KEY_HEADER, CaseService, ServingSettings, create_app


def _app(ready: bool = True):
    router = APIRouter()

    @router.get("/echo/{word}")
    async def echo(word: str) -> dict:
        return {"word": word}

    events: list[str] = []

    async def start():
        events.append("start")

    async def stop():
        events.append("stop")

    service = CaseService("demo", router, start=start, stop=stop, ready=lambda: {"ready": ready, "model_version": "3"})
    settings = ServingSettings(api_key="s3cret", home=LakehouseHome(Path("/nonexistent")))
    return create_app(settings, services=[service]), events


def test_case_routes_need_the_api_key():
    app, _ = _app()
    with TestClient(app) as client:
        assert client.get("/demo/echo/hi").status_code == 401
        assert client.get("/demo/echo/hi", headers={API_KEY_HEADER: "wrong"}).status_code == 401
        ok = client.get("/demo/echo/hi", headers={API_KEY_HEADER: "s3cret"})
        assert ok.status_code == 200 and ok.json() == {"word": "hi"}


def test_health_and_readiness_need_no_key_and_report_each_case():
    app, events = _app(ready=False)
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["cases"]["demo"] == {"ready": False, "model_version": "3"}
        assert events == ["start"]
    assert events == ["start", "stop"]


def test_openapi_lists_case_routes_and_the_key_scheme():
    app, _ = _app()
    spec = TestClient(app).get("/openapi.json").json()
    assert "/demo/echo/{word}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == API_KEY_HEADER


def test_settings_refuse_to_start_without_a_key(monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="LAKEHOUSE_API_KEY"):
        ServingSettings.from_env()
    monkeypatch.setenv("LAKEHOUSE_API_KEY", "k")
    monkeypatch.setenv("LAKEHOUSE_SERVING_CASES", "fraud,weather")
    with pytest.raises(SystemExit, match="weather"):
        ServingSettings.from_env()


def test_the_app_mounts_the_cases_registered_as_entry_points(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_API_KEY", "k")
    monkeypatch.delenv("LAKEHOUSE_SERVING_CASES", raising=False)
    assert ServingSettings.from_env().cases == ("forecast", "fraud", "triage")
    monkeypatch.setenv("LAKEHOUSE_SERVING_CASES", "triage")
    assert ServingSettings.from_env().cases == ("triage",)


def test_a_body_over_the_limit_is_refused_before_authentication_and_parsing():
    router = APIRouter()
    seen = []

    @router.post("/echo")
    async def echo(body: dict) -> dict:
        seen.append(body)
        return {"size": len(str(body))}

    app = create_app(
        ServingSettings(api_key="s3cret", home=LakehouseHome(Path("/nonexistent")), max_body_bytes=1000),
        services=[CaseService("demo", router)],
    )
    big = b'{"text": "' + b"x" * 5000 + b'"}'

    def chunks():  # no Content-Length: the limit holds while reading
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    with TestClient(app) as client:
        assert client.post("/demo/echo", content=big, headers={"content-type": "application/json"}).status_code == 413
        assert (
            client.post(
                "/demo/echo", content=chunks(), headers={"content-type": "application/json", API_KEY_HEADER: "s3cret"}
            ).status_code
            == 413
        )
        assert client.post("/demo/echo", json={"text": "short"}, headers={API_KEY_HEADER: "s3cret"}).status_code == 200
    assert seen == [{"text": "short"}]


def test_a_validation_error_never_echoes_a_large_input():
    router = APIRouter()

    @router.post("/number")
    async def number(body: dict[str, int]) -> dict:
        return body

    app = create_app(
        ServingSettings(api_key="s3cret", home=LakehouseHome(Path("/nonexistent"))),
        services=[CaseService("demo", router)],
    )
    with TestClient(app) as client:
        answer = client.post("/demo/number", json={"n": "y" * 30_000}, headers={API_KEY_HEADER: "s3cret"})
    assert answer.status_code == 422
    assert len(answer.content) < 400 and "30000 characters" in answer.text and "y" * 41 not in answer.text


def test_no_error_echoes_more_than_a_few_dozen_characters_of_a_value():
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict:
        raise HTTPException(404, detail=f"no thing {thing_id!r} here; try another one")

    @router.post("/strict")
    async def strict(body: dict[str, int]) -> dict:
        return body

    app = create_app(
        ServingSettings(api_key="s3cret", home=LakehouseHome(Path("/nonexistent"))),
        services=[CaseService("demo", router)],
    )
    huge = "i" * 60_000
    key = {API_KEY_HEADER: "s3cret"}
    with TestClient(app) as client:
        missing = client.get(f"/demo/things/{huge}", headers=key)
        unknown_route = client.get(f"/nowhere/{huge}")
        unknown_key = client.post("/demo/strict", json={huge: "x"}, headers=key)
        spaced = client.get(f"/demo/things/{'word ' * 2_000}", headers=key)
    assert missing.status_code == 404 and len(missing.content) < 200
    assert (
        missing.json()["detail"].startswith("no thing 'iii")
        and "(60002 characters) here; try another one" in missing.text
    )
    assert unknown_route.status_code == 404 and len(unknown_route.content) < 200
    assert unknown_key.status_code == 422 and len(unknown_key.content) < 400 and "i" * 41 not in unknown_key.text
    assert spaced.status_code == 404 and len(spaced.content) < 300


def test_a_case_preflight_runs_before_any_worker_starts(monkeypatch):
    from lakehouse.serving.__main__ import serve

    monkeypatch.setenv("LAKEHOUSE_API_KEY", "k")
    monkeypatch.setenv("LAKEHOUSE_SERVING_CASES", "fraud")
    monkeypatch.delenv("LAKEHOUSE_FRAUD_CONSUMERS", raising=False)
    with pytest.raises(SystemExit, match="LAKEHOUSE_FRAUD_CONSUMERS=off"):
        serve("127.0.0.1", 0, workers=2)


def test_a_hot_route_shortcut_answers_only_keyed_requests_it_accepts():
    router = APIRouter()

    @router.post("/echo")
    async def echo(body: dict) -> dict:
        return {"route": body}

    async def shortcut(body: bytes) -> bytes | None:
        return b'{"shortcut": true}' if json.loads(body) == {"fast": 1} else None

    service = CaseService("demo", router, hot={"/echo": shortcut})
    app = create_app(ServingSettings(api_key="s3cret", home=LakehouseHome(Path("/nonexistent"))), services=[service])
    with TestClient(app) as client:
        key = {API_KEY_HEADER: "s3cret"}
        assert client.post("/demo/echo", json={"fast": 1}, headers=key).json() == {"shortcut": True}
        assert client.post("/demo/echo", json={"slow": 2}, headers=key).json() == {
            "route": {"slow": 2}
        }  # declined: the route answers
        assert client.post("/demo/echo", json={"fast": 1}, headers={API_KEY_HEADER: "wrong"}).status_code == 401
        assert (
            client.post("/demo/echo", content=b"[1]", headers=key | {"content-type": "application/json"}).status_code
            == 422
        )


def test_readiness_may_be_asked_asynchronously_on_every_probe():
    answers = iter([False, True])
    asked = []

    async def ready() -> dict:
        asked.append(1)
        return {"ready": next(answers)}

    service = CaseService("demo", APIRouter(), ready=ready)
    app = create_app(ServingSettings(api_key="s3cret", home=LakehouseHome(Path("/nonexistent"))), services=[service])
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 503
        second = client.get("/ready")
    assert second.status_code == 200 and second.json()["cases"]["demo"] == {"ready": True} and len(asked) == 2
