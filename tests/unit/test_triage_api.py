"""The triage endpoint: scrubbing and prediction run in a worker thread, never on the event loop, and a
large ticket full of personal data comes back scrubbed, with its route and reason."""

import threading

import polars as pl

from lakehouse.common.home import LakehouseHome
from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app


class FixedClassifier:
    """Says `billing` with a confidence of 0.9 for every text, and routes automatically above 0.88."""

    auto_threshold = 0.88

    def predict(self, texts):
        return pl.DataFrame(
            {
                "category": ["billing"] * len(texts),
                "confidence": [0.9] * len(texts),
                "out_of_scope": [False] * len(texts),
            }
        )


def test_a_large_ticket_is_scrubbed_off_the_event_loop(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    import lakehouse.triage.api as api

    threads = []
    real_prepare = api.prepare

    def prepare(*args):
        threads.append(threading.current_thread())
        return real_prepare(*args)

    monkeypatch.setattr(api, "prepare", prepare)
    service = api.service(ServingSettings(api_key="k", home=LakehouseHome(tmp_path), cases=("triage",)))
    triage = service.start.__self__

    async def start():  # the champion, without an MLflow store
        triage.classifier, triage.version = FixedClassifier(), "7"

    service.start = start
    body = "I was billed twice, card 4111 1111 1111 1111, call +44 7911 123456. " * 700  # about 48 KB
    with TestClient(
        create_app(service_settings := ServingSettings(api_key="k", home=LakehouseHome(tmp_path)), [service])
    ) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread())
        response = client.post(
            "/triage/tickets",
            json={"subject": "Charged twice", "body": body},
            headers={API_KEY_HEADER: service_settings.api_key},
        )
    assert response.status_code == 200, response.text
    out = response.json()
    assert (
        out["category"] == "billing"
        and out["route"] == "auto"
        and out["reason"] == "confident"
        and out["team"] == "finance"
    )
    assert out["auto_threshold"] == FixedClassifier.auto_threshold
    assert "4111" not in out["text"] and "7911" not in out["text"] and out["pii_found"] == {"card": 700, "phone": 700}
    assert threads and all(t is not loop_thread for t in threads)
