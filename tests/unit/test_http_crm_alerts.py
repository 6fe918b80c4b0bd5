"""HTTP retry helper, CRM sinks and alert sinks against a real loopback HTTP server."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from lakehouse.churn.crm import OutboxCrm, RestCrm
from lakehouse.common.alerts import Alert, post_webhook, read_alerts, record_alerts
from lakehouse.common.http import DeliveryError, post_json
from tests.loopback import UPSERT_SUFFIX, FakeServer, serve

TOKEN = "s3cr3t-token-value"
UPSERT_PATH = "/crm" + UPSERT_SUFFIX


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with serve() as state:
        yield state


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2.0) as c:
        yield c


def _records(n: int, score: float = 0.5, snapshot: str = "2024-06-30") -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"C{i:04d}",
            "score": score,
            "risk_tier": "high" if score > 0.7 else "low",
            "action": "call",
            "top_reasons": "tenure;support_tickets",
            "snapshot_date": snapshot,
            "model_version": "v1",
        }
        for i in range(n)
    ]


def _alert(evaluation_id: str, **overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "evaluation_id": evaluation_id,
        "case": "churn",
        "check_name": "null_rate",
        "asset_key": "churn/features",
        "partition": "2024-06-30",
        "severity": "ERROR",
        "value": 0.12,
        "threshold": "<= 0.05",
        "description": "too many <nulls> & gaps",
        "evaluated_at": datetime(2024, 6, 30, 12, tzinfo=UTC),
    }
    return Alert(**{**fields, **overrides})


# --- post_json ---------------------------------------------------------------------------
# Tests that look at the backoff record the delays stamina schedules (tiny ones, really slept);
# the others run in stamina's testing mode, which keeps each call's attempts and skips the waits.


@pytest.fixture
def scheduled_delays() -> Iterator[list[float]]:
    delays: list[float] = []
    stamina.instrumentation.set_on_retry_hooks([lambda details: delays.append(details.wait_for)])
    try:
        yield delays
    finally:
        stamina.instrumentation.set_on_retry_hooks(None)


@pytest.fixture
def no_waiting() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def test_retries_503_then_succeeds(server: FakeServer, client: httpx.Client, scheduled_delays: list[float]) -> None:
    server.script = [(503, {}), (503, {})]
    response = post_json(client, f"{server.url}/x", {"a": 1}, backoff_s=0.01)
    assert response.status_code == 200
    assert len(server.requests) == 3
    assert all(r["body"] == {"a": 1} for r in server.requests)
    assert scheduled_delays == pytest.approx([0.01, 0.02])


def test_429_retry_after_honoured_and_capped(
    server: FakeServer, client: httpx.Client, scheduled_delays: list[float]
) -> None:
    server.script = [(429, {"Retry-After": "0"}), (429, {"Retry-After": "60"}), (429, {"Retry-After": "soon"})]
    post_json(client, f"{server.url}/x", {}, backoff_s=0.01, max_backoff_s=0.05)
    # header, header capped, non-numeric -> exponential (third retry: 0.01 * 2**2)
    assert scheduled_delays == pytest.approx([0.0, 0.05, 0.04])
    assert len(server.requests) == 4


def test_exponential_backoff_is_capped(server: FakeServer, client: httpx.Client, scheduled_delays: list[float]) -> None:
    server.script = [(502, {})] * 4
    post_json(client, f"{server.url}/x", {}, backoff_s=0.01, max_backoff_s=0.03)
    assert scheduled_delays == pytest.approx([0.01, 0.02, 0.03, 0.03])


@pytest.mark.usefixtures("no_waiting")
def test_gives_up_after_max_attempts(server: FakeServer, client: httpx.Client) -> None:
    server.script = [(500, {})] * 10
    with pytest.raises(DeliveryError) as err:
        post_json(client, f"{server.url}/x?key=abc", {}, max_attempts=3)
    assert len(server.requests) == 3
    assert err.value.status == 500 and err.value.attempts == 3
    message = str(err.value)
    assert f"{server.url}/x" in message and "500" in message and "3 attempt" in message
    assert "key=abc" not in message


@pytest.mark.usefixtures("no_waiting")
def test_no_retry_on_400(server: FakeServer, client: httpx.Client) -> None:
    server.script = [(400, {}), (200, {})]
    with pytest.raises(DeliveryError) as err:
        post_json(client, f"{server.url}/x", {})
    assert err.value.status == 400 and err.value.attempts == 1
    assert len(server.requests) == 1


def test_connection_refused_retried_then_fails(client: httpx.Client, scheduled_delays: list[float]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    with pytest.raises(DeliveryError) as err:
        post_json(client, f"http://127.0.0.1:{port}/x", {}, max_attempts=3, backoff_s=0.01)
    assert scheduled_delays == pytest.approx([0.01, 0.02])
    assert err.value.status is None and err.value.attempts == 3 and "ConnectError" in str(err.value)
    assert isinstance(err.value.__cause__, httpx.TransportError)


def test_max_attempts_must_be_positive(client: httpx.Client) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        post_json(client, "http://127.0.0.1:1/x", {}, max_attempts=0)


# --- RestCrm -----------------------------------------------------------------------------


def test_rest_crm_batches_retries_and_delivers_each_record_once(
    server: FakeServer, client: httpx.Client, scheduled_delays: list[float]
) -> None:
    server.script = [(500, {}), (429, {"Retry-After": "0"})]
    crm = RestCrm(f"{server.url}/crm/", TOKEN, batch_size=200, client=client, backoff_s=0.01)
    records = _records(450)

    assert crm.upsert(records) == 450

    assert len(server.requests) == 5  # 2 failures + 3 batches
    assert scheduled_delays == pytest.approx([0.01, 0.0])
    assert {r["path"] for r in server.requests} == {UPSERT_PATH}
    assert all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in server.requests)
    assert [len(r["body"]["records"]) for r in server.requests[2:]] == [200, 200, 50]
    assert all(r["body"]["allOrNone"] is False for r in server.requests)
    assert set(server.applied.values()) == {1} and len(server.applied) == 450
    first = server.accounts["C0000"]
    assert first == {
        "attributes": {"type": "Account"},
        "External_Id__c": "C0000",
        "Churn_Score__c": 0.5,
        "Churn_Risk_Tier__c": "low",
        "Churn_Action__c": "call",
        "Churn_Top_Reasons__c": "tenure;support_tickets",
        "Churn_Snapshot_Date__c": "2024-06-30",
        "Churn_Model_Version__c": "v1",
    }


def test_rest_crm_rerun_is_idempotent(server: FakeServer, client: httpx.Client) -> None:
    crm = RestCrm(f"{server.url}/crm", TOKEN, batch_size=200, client=client)
    records = _records(450)
    crm.upsert(records)
    snapshot = json.dumps(server.accounts, sort_keys=True)
    assert crm.upsert(records) == 450
    assert json.dumps(server.accounts, sort_keys=True) == snapshot
    assert len(server.accounts) == 450


@pytest.mark.usefixtures("no_waiting")
def test_rest_crm_never_leaks_token(
    server: FakeServer, client: httpx.Client, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script = [(503, {})] * 5
    crm = RestCrm(f"{server.url}/crm", TOKEN, client=client, max_attempts=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as err:
        crm.upsert(_records(3))
    assert len(server.requests) == 2
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value) and TOKEN not in repr(crm)
    # stamina logs each scheduled retry (through structlog when installed, else logging): no token there either
    logged = caplog.text + capsys.readouterr().out
    assert "retry_scheduled" in logged and TOKEN not in logged


# --- OutboxCrm ---------------------------------------------------------------------------


def test_outbox_upsert_is_idempotent(tmp_path: Path) -> None:
    outbox = OutboxCrm(tmp_path / "ops" / "ops.db")
    assert outbox.read().is_empty()

    assert outbox.upsert(_records(5)) == 5
    first = outbox.read()
    assert outbox.upsert(_records(5)) == 5
    assert outbox.read().equals(first)  # including updated_at: unchanged rows are untouched

    outbox.upsert(_records(2, score=0.9, snapshot="2024-07-31"))
    after = outbox.read().sort("external_id")
    assert after.height == 5
    assert after["score"].to_list() == [0.9, 0.9, 0.5, 0.5, 0.5]
    assert after["risk_tier"].to_list()[:2] == ["high", "high"]
    assert after["snapshot_date"].to_list()[:3] == ["2024-07-31", "2024-07-31", "2024-06-30"]


# --- alerts ------------------------------------------------------------------------------


def test_record_alerts_deduplicates_by_evaluation_id(tmp_path: Path) -> None:
    db = tmp_path / "ops.db"
    assert read_alerts(db).columns == [
        "evaluation_id",
        "case_name",
        "check_name",
        "asset_key",
        "partition",
        "severity",
        "value",
        "threshold",
        "description",
        "evaluated_at",
        "recorded_at",
        "resolved_at",
        "resolved_by",
    ]
    assert [a.evaluation_id for a in record_alerts(db, [_alert("e1"), _alert("e2")])] == ["e1", "e2"]
    assert [a.evaluation_id for a in record_alerts(db, [_alert("e2"), _alert("e3"), _alert("e3")])] == ["e3"]
    frame = read_alerts(db)
    assert frame["evaluation_id"].to_list() == ["e1", "e2", "e3"]
    assert frame["evaluated_at"][0] == "2024-06-30T12:00:00+00:00"
    assert frame["case_name"][0] == "churn" and frame["value"][0] == 0.12


def test_post_webhook_delivers_slack_json(server: FakeServer, client: httpx.Client) -> None:
    alerts = [_alert("e1"), _alert("e2", severity="WARN", partition=None, value=None)]
    assert post_webhook(f"{server.url}/hook", alerts, client=client) == 2
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 2 and all(r["path"] == "/hook" for r in server.requests)
    for body in bodies:
        assert isinstance(body["text"], str) and body["text"]
        section = body["blocks"][0]
        assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    text = bodies[0]["blocks"][0]["text"]["text"]
    for fragment in ("churn", "null_rate", "churn/features", "2024-06-30", "0.12", "&lt;= 0.05", "ERROR"):
        assert fragment in text
    assert "&lt;nulls&gt; &amp; gaps" in text


def test_post_webhook_failure_hides_webhook_path(server: FakeServer, client: httpx.Client) -> None:
    server.script = [(404, {})]
    with pytest.raises(DeliveryError) as err:
        post_webhook(f"{server.url}/services/T0/B0/SECRET", [_alert("e1")], client=client)
    assert "SECRET" not in str(err.value) and err.value.status == 404
