"""POST /fraud/decisions: the real-time decision service (mounted in the shared app).

The champion cascade is loaded from MLflow at start and polled: a promotion swaps the model
between two requests (a request finishes with the model it started with). Rule lists come
from Redis (polled) or, when Redis is away at start, from the lake. With
LAKEHOUSE_FRAUD_CONSUMERS=inline (default) the stream consumers (feature updates, decision
log) run inside the service; `off` leaves them to `python -m lakehouse.fraud.consumer`.
The events go to a Redis Stream, or to Kafka when LAKEHOUSE_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lakehouse.common.registry import Registry
from lakehouse.fraud.config import CASE, CONSUMER_GROUPS, SETTINGS, fraud_serving_env
from lakehouse.fraud.model import load_cascade
from lakehouse.fraud.online import (
    Decider,
    DecisionLogConsumer,
    EventPublisher,
    FeatureConsumer,
    LoadedModel,
    epoch_ms,
    event_fields,
    event_stream,
    read_lists,
)
from lakehouse.fraud.rules import RuleLists
from lakehouse.serving.app import CaseService, ServingSettings

log = logging.getLogger(__name__)
ID = r"^[^\x00-\x1f]{1,64}$"  # no control characters: they separate fields in the store


class TransactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tx_id: str = Field(pattern=ID, description="Unique transaction id (idempotency key of the feature update).")
    ts: datetime | None = Field(None, description="Event time (ISO 8601, UTC when naive); default: now.")
    customer_id: str = Field(pattern=ID)
    card_id: str = Field(pattern=ID)
    merchant_id: str = Field(pattern=ID)
    channel: Literal["card_present", "ecommerce", "transfer"]
    amount_eur: float = Field(gt=0, le=10_000_000)
    device_id: str | None = Field(None, pattern=ID)
    ip: str | None = Field(None, pattern=ID)
    payee_iban: str | None = Field(None, pattern=ID)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class DecisionOut(BaseModel):
    tx_id: str
    decision: Literal["approve", "review", "block"]
    score: float = Field(description="Fraud probability of the last layer reached (1.0 for a layer-1 block).")
    layer: int = Field(description="1 rules, 2 LightGBM, 3 XGBoost.")
    reasons: list[str]
    model_version: str
    degraded: bool = Field(description="True when the feature store was unavailable: rules + layer 2 on default features.")
    latency_ms: float = Field(description="Server-side time to decide.")
    layer_ms: dict[str, float]


def async_client(url: str, timeout_s: float) -> aioredis.Redis:
    # No client-side retries: a failed read must fail fast, the caller decides without the store.
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))


class FraudService:
    def __init__(self, settings: ServingSettings, consumers: str | None = None):
        self.settings = settings
        self.consumers_mode = consumers or fraud_serving_env()["consumers"]
        self.registry = Registry(settings.tracking_uri, settings.home.mlflow_artifacts)
        self.parts_root = settings.home.lake / CASE / "decision_log_parts"
        self.decider: Decider | None = None
        self.lists_version: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.client = async_client(settings.redis_url, 1.0)
        self.consumer_client = async_client(settings.redis_url, 2.0)
        self.stream = event_stream(self.client)
        self.consumer_stream = event_stream(self.consumer_client)
        self.publisher = EventPublisher(self.stream, settings.home.root / CASE / "spool", SETTINGS)
        self.consumers = [
            FeatureConsumer(self.consumer_stream, self.consumer_client),
            DecisionLogConsumer(self.consumer_stream, self.parts_root),
        ]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.lists = await self._initial_lists()
        lists = self.lists
        try:
            cascade, version = await asyncio.to_thread(load_cascade, self.registry, SETTINGS)
            self.decider = Decider(self.client, LoadedModel(cascade, version), lists, SETTINGS)
        except LookupError as exc:
            log.warning("fraud service starts without a model: %s", exc)
        self.publisher.start()
        self.tasks = [asyncio.create_task(self._poll_model()), asyncio.create_task(self._poll_lists())]
        if self.consumers_mode == "inline":
            self.tasks += [asyncio.create_task(c.run()) for c in self.consumers]

    async def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stopping = True
        for task in self.tasks[:2]:  # the pollers only sleep or wait for MLflow: safe to cancel
            task.cancel()
        await asyncio.wait(self.tasks, timeout=5.0)
        await self.publisher.stop()
        for stream in (self.stream, self.consumer_stream):
            await stream.aclose()
        await self.client.aclose()
        await self.consumer_client.aclose()

    async def _initial_lists(self) -> RuleLists:
        try:
            lists, self.lists_version = await asyncio.wait_for(read_lists(self.client), 1.0)
            if self.lists_version is not None:
                return lists
        except Exception as exc:
            log.warning("rule lists not readable from Redis (%r): using the lake's", exc)
        lake_file = self.settings.home.lake / CASE / "rule_lists" / "data.parquet"
        if lake_file.exists():
            import polars as pl

            return RuleLists.from_frame(pl.read_parquet(lake_file))
        return RuleLists()

    async def _poll_model(self) -> None:
        name = SETTINGS.registered_model_name
        while True:
            await asyncio.sleep(SETTINGS.model_poll_s)
            try:
                version = await asyncio.to_thread(self.registry.alias_version, name, "champion")
                current = self.decider.model.version if self.decider else None
                if version is not None and version != current:
                    cascade, version = await asyncio.to_thread(load_cascade, self.registry, SETTINGS)
                    if self.decider is None:
                        self.decider = Decider(self.client, LoadedModel(cascade, version), self.lists, SETTINGS)
                    else:
                        self.decider.model = LoadedModel(cascade, version)
                    log.warning("fraud champion v%s -> v%s", current, version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model poll failed: %r", exc)

    async def _poll_lists(self) -> None:
        while True:
            await asyncio.sleep(SETTINGS.lists_poll_s)
            try:
                lists, version = await asyncio.wait_for(read_lists(self.client), 1.0)
                if version is not None and version != self.lists_version and self.decider is not None:
                    self.decider.lists = self.lists = lists
                    self.lists_version = version
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # Redis away: keep the lists in memory

    async def drained(self) -> bool:
        """Every decision so far is published and handled by both consumer groups."""
        return not self.publisher.buffer and await self.consumer_stream.caught_up(CONSUMER_GROUPS)

    def ready(self) -> dict:
        decider = self.decider
        return {
            "ready": decider is not None,
            "model_version": decider.model.version if decider else None,
            "feature_store": "unavailable" if decider and decider.breaker.consecutive else "ok",
            "lists_version": self.lists_version,
            "events_waiting": len(self.publisher.buffer),
            "events_published": self.publisher.published,
            "consumers": self.consumers_mode,
        }

    # ------------------------------------------------------------------ routes

    async def _decide(self, decider: Decider, tx: TransactionIn) -> bytes:
        ts = tx.ts or datetime.now(UTC)
        fields = tx.model_dump()
        decision, features = await decider.decide(fields, ts)
        self.publisher.put(event_fields(fields, epoch_ms(ts), decision, features, decider.model.cascade.layer2_features))
        # Serialized here: the response model documents the body without validating it twice.
        return json.dumps(decision.as_dict()).encode()

    async def decide_shortcut(self, body: bytes) -> bytes | None:
        """POST /decisions without FastAPI's machinery: None for anything but a valid body with
        a model loaded, which the route then answers (422, 503)."""
        decider = self.decider
        if decider is None:
            return None
        try:
            tx = TransactionIn.model_validate_json(body)
        except ValidationError:
            return None
        return await self._decide(decider, tx)

    def case_service(self) -> CaseService:
        return CaseService(CASE, self.router(), start=self.start, stop=self.stop, ready=self.ready, hot={"/decisions": self.decide_shortcut})

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post(
            "/decisions",
            response_model=DecisionOut,
            summary="Decide on one payment: approve, review or block",
            responses={503: {"description": "No champion model is loaded yet"}},
        )
        async def decide(tx: TransactionIn) -> Response:
            decider = self.decider
            if decider is None:
                raise HTTPException(503, "no champion fraud model is loaded yet: train and promote one")
            return Response(await self._decide(decider, tx), media_type="application/json")

        return router


def service(settings: ServingSettings) -> CaseService:
    return FraudService(settings).case_service()


def preflight(settings: ServingSettings) -> None:
    """Checked once before the workers start: the stream consumers must not run once per worker."""
    if settings.workers > 1 and fraud_serving_env()["consumers"] == "inline":
        raise SystemExit(
            "several workers would each run the fraud stream consumers: set LAKEHOUSE_FRAUD_CONSUMERS=off "
            "and run `python -m lakehouse.fraud.consumer` beside the service"
        )
