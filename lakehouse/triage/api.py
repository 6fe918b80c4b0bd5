"""Online triage: POST /triage/tickets with a raw ticket -> scrubbed text, category, confidence, route.

The champion model is loaded once at start. Scrubbing and prediction run in a worker thread,
never on the event loop, and every scrubbing pattern is linear in the text, so a large ticket
never stalls the app's other routes. The sender's name and contact details, which the
helpdesk knows, are scrubbed as the CRM's are in the batch path; the same detectors and the
same cleaning run in both. A ticket's answer does not depend on other requests (the
classifier scores each text on its own).
"""

from __future__ import annotations

import asyncio
import threading
import time

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from lakehouse.common.registry import CHAMPION, Registry
from lakehouse.common.settings import configured_sources_path
from lakehouse.serving.app import CaseService, ServingSettings
from lakehouse.triage.model import AUTO, TriageClassifier, route
from lakehouse.triage.pii import KnownPeople, model_text, prepare
from lakehouse.triage.registered import load_classifier
from lakehouse.triage.settings import TriageSettings


class TicketIn(BaseModel):
    subject: str = Field(..., max_length=1_000)
    body: str = Field("", max_length=50_000)
    channel: str | None = None
    sender_first_name: str | None = None
    sender_last_name: str | None = None
    sender_email: str | None = None
    sender_phone: str | None = None


class TriageOut(BaseModel):
    text: str  # the scrubbed, cleaned text the model read
    category: str
    confidence: float
    route: str  # auto | human_validation
    reason: str  # confident | low_confidence | out_of_scope
    auto_threshold: float  # the model's auto-route threshold: a confidence above it is routed automatically
    team: str | None  # the category's team when auto-routed
    model_version: str
    pii_found: dict[str, int]
    latency_ms: float


class TriageService:
    def __init__(self, settings: ServingSettings):
        self.settings = settings
        self.classifier: TriageClassifier | None = None
        self.version: str | None = None
        self.error: str | None = None
        self.case_settings = TriageSettings.load(configured_sources_path())
        self._lock = threading.Lock()  # one inference at a time: torch already uses every core

    async def start(self) -> None:
        def load():
            registry = Registry(self.settings.tracking_uri, self.settings.home.mlflow_artifacts)
            return load_classifier(registry, self.case_settings, CHAMPION)

        try:
            self.classifier, self.version = await asyncio.to_thread(load)
        except LookupError as exc:
            self.error = str(exc)

    def ready(self) -> dict:
        return {
            "ready": self.classifier is not None,
            "model_version": self.version,
            **({"error": self.error} if self.error else {}),
        }

    def triage(self, ticket: TicketIn) -> TriageOut:
        started = time.perf_counter()
        people = KnownPeople.from_records(
            [
                {
                    "customer_id": "sender",
                    "first_name": ticket.sender_first_name,
                    "last_name": ticket.sender_last_name,
                    "email": ticket.sender_email,
                    "phone": ticket.sender_phone,
                }
            ]
        )
        settings = self.case_settings
        subject, body, found = prepare(ticket.subject, ticket.body, people, "sender", settings.phone_region)
        text = model_text(subject, body)
        with self._lock:
            predicted = self.classifier.predict([text])
        decided = route(predicted, self.classifier.auto_threshold).row(0, named=True)
        return TriageOut(
            text=text,
            category=decided["category"],
            confidence=decided["confidence"],
            route=decided["route"],
            reason=decided["reason"],
            auto_threshold=self.classifier.auto_threshold,
            team=settings.team(decided["category"]) if decided["route"] == AUTO else None,
            model_version=self.version,
            pii_found=dict(found),
            latency_ms=1000 * (time.perf_counter() - started),
        )


def service(settings: ServingSettings) -> CaseService:
    triage = TriageService(settings)
    router = APIRouter()

    @router.post(
        "/tickets", response_model=TriageOut, summary="Classify and route one raw ticket with the champion model"
    )
    async def triage_ticket(ticket: TicketIn) -> TriageOut:
        if triage.classifier is None:
            raise HTTPException(503, detail=f"no champion model loaded: {triage.error or 'starting'}")
        return await asyncio.to_thread(triage.triage, ticket)

    return CaseService("triage", router, start=triage.start, ready=triage.ready)
