"""POST /fraud/decisions and POST /fraud/labels: the real-time decision service (mounted in the shared app).

The champion cascade is loaded from MLflow at start and polled: a promotion swaps the model
between two requests (a request finishes with the model it started with). Rules come from
Redis (polled) or, when Redis is away at start, from the lake. Every answered decision is in
the on-disk spool before the answer leaves; the publisher moves it to the event stream. With
`consumers: inline` (default) the stream consumers (feature updates, decision log) run inside
the service; `off` leaves them to `python -m lakehouse.fraud.consumer`.

Hardening: event times are checked against the service clock (refused when further ahead than
`serving.future_tolerance_s` or older than the longest feature window; earlier times within
the window are fine, out of order included), in the shape of the app's validation errors;
non-finite numbers are refused (422); a store without its epoch key (empty, or a Redis restarted
without its data), found by a decision or by a readiness probe, makes /ready answer 503, its
decisions are flagged degraded, and it is warmed again from the lake in the background; a full
spool answers 503 rather than a decision it could not log.
"""

import asyncio
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lakehouse.common.registry import CHAMPION, Registry
from lakehouse.common.settings import configured_sources_path
from lakehouse.fraud.features_online import EPOCH_KEY
from lakehouse.fraud.features_registry import DAY_MS, registry_for
from lakehouse.fraud.inputs import InputLimits, input_models
from lakehouse.fraud.model import load_cascade
from lakehouse.fraud.online import (
    CONSUMER_GROUPS,
    WARMING_KEY,
    Decider,
    DecisionLogConsumer,
    FeatureConsumer,
    LoadedModel,
    StoreLostDuringWarmUp,
    epoch_ms,
    event_fields,
    event_stream,
    label_fields,
    read_lists,
    store_history,
    warm_store,
)
from lakehouse.fraud.rules import RuleLists
from lakehouse.fraud.settings import CASE, FraudSettings
from lakehouse.fraud.spool import EventPublisher, Spool, SpoolFull
from lakehouse.serving.app import CaseService
from lakehouse.serving.app import ServingSettings as AppSettings

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 0.5  # a readiness probe's look at the feature store
WARMING_TTL_S = 10  # the warming key outlives a dead warmer by at most this long
REFRESH_SCRIPT = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"
)
RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class DecisionOut(BaseModel):
    tx_id: str
    decision: str = Field(description="approve, review or block.")
    score: float = Field(description="Fraud probability of the last layer reached (1.0 for a layer-1 block).")
    layer: int = Field(description="1 rules, 2 LightGBM, 3 XGBoost.")
    reasons: list[str]
    model_version: str
    degraded: bool = Field(
        description=(
            "True when the feature store was unavailable or had lost its data: rules + layer 2 on default features."
        )
    )
    latency_ms: float = Field(description="Server-side time to decide.")
    layer_ms: dict[str, float]


def async_client(url: str, timeout_s: float, read_timeout: bool = True) -> aioredis.Redis:
    """No client-side retries: a failed read must fail fast, the caller decides without the store. Without
    `read_timeout`, the caller bounds each call itself (the decisions' reads: a socket timeout would cost
    every call a task of its own)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s if read_timeout else None,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class ServiceClock:
    """`now` for the checks of event times: the wall clock, or, to replay past traffic, a clock
    that starts at `replay_from` and moves forward with time and with the payments accepted."""

    def __init__(self, replay_from: datetime | None = None):
        self.origin = epoch_ms(replay_from) if replay_from else None
        self.started = time.monotonic()
        self.latest = 0

    def now_ms(self) -> int:
        if self.origin is None:
            return time.time_ns() // 1_000_000
        return max(self.latest, self.origin + round((time.monotonic() - self.started) * 1000))

    def accept(self, ts_ms: int) -> None:
        self.latest = max(self.latest, ts_ms)


def _refused(field: str, message: str) -> RequestValidationError:
    """A refusal in the shape of the app's validation errors (422)."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


class FraudService:
    def __init__(self, settings: AppSettings, fraud: FraudSettings | None = None, clock: ServiceClock | None = None):
        self.settings = settings
        self.fraud = fraud or FraudSettings.load(configured_sources_path())
        self.clock = clock or ServiceClock(self.fraud.serving.replay_from)
        self.transaction_in, self.label_in = input_models(InputLimits.of(self.fraud))
        self.registry = Registry(settings.tracking_uri, settings.home.mlflow_artifacts)
        self.lake = settings.lake
        self.decider: Decider | None = None
        self.lists = RuleLists()
        self.lists_version: str | None = None
        self.tasks: list[asyncio.Task] = []
        self.warming: asyncio.Task | None = None
        self.warmed = 0
        self.client = async_client(settings.redis_url, 1.0)
        self.decision_client = async_client(settings.redis_url, 1.0, read_timeout=False)  # reads bounded by the decider
        self.consumer_client = async_client(settings.redis_url, 2.0)
        self.stream = event_stream(self.client, self.fraud)
        self.consumer_stream = event_stream(self.consumer_client, self.fraud)
        serving = self.fraud.serving
        self.publisher = EventPublisher(
            self.stream,
            Spool(settings.home.root / CASE / "spool", serving.spool_max_bytes, serving.spool_segment_events),
            serving,
        )
        self.features = FeatureConsumer(
            self.consumer_stream, self.consumer_client, registry_for(self.fraud), self.fraud
        )
        self.consumers = [self.features, DecisionLogConsumer(self.consumer_stream, self.lake, self.fraud)]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.lists = await self._initial_lists()
        try:
            self._use(await asyncio.to_thread(self._load))
        except LookupError as exc:
            log.warning("fraud service starts without a model: %s", exc)
        try:
            warm = await asyncio.wait_for(self.client.exists(EPOCH_KEY), 1.0)
        except Exception:  # Redis away: the first read that finds it back checks the epoch
            warm = True
        if not warm:
            await self._warm()
        if self.decider is not None:
            try:
                await asyncio.wait_for(self.decider.prepare(), 1.0)
            except Exception as exc:  # Redis away: the first read that finds it back loads the script
                log.warning("fraud read script not loaded at start: %r", exc)
        self.publisher.start()
        self.tasks = [asyncio.create_task(self._poll_model()), asyncio.create_task(self._poll_lists())]
        if self.fraud.consumers == "inline":
            self.tasks += [asyncio.create_task(c.run()) for c in self.consumers]

    async def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stopping = True
        for task in [*self.tasks[:2], *([self.warming] if self.warming else [])]:  # pollers and warm-up: safe to cancel
            task.cancel()
        await asyncio.wait([*self.tasks, *([self.warming] if self.warming else [])], timeout=5.0)
        await self.publisher.stop()
        for stream in (self.stream, self.consumer_stream):
            await stream.aclose()
        for client in (self.client, self.decision_client, self.consumer_client):
            await client.aclose()

    def _load(self) -> LoadedModel:
        return LoadedModel.of(*load_cascade(self.registry, self.fraud))

    def _use(self, model: LoadedModel) -> None:
        if self.decider is None:
            self.decider = Decider(self.decision_client, model, self.lists, self.fraud, on_store_lost=self._store_lost)
        else:
            self.decider.model = model
        self.features.registry = model.cascade.registry

    async def _initial_lists(self) -> RuleLists:
        try:
            lists, self.lists_version = await asyncio.wait_for(read_lists(self.client), 1.0)
            if self.lists_version is not None:
                return lists
        except Exception as exc:
            log.warning("rule lists not readable from Redis (%r): using the lake's", exc)
        if self.lake.exists(CASE, "rule_lists"):
            return RuleLists.from_frame(await asyncio.to_thread(self.lake.read, CASE, "rule_lists"))
        return RuleLists()

    async def _poll_model(self) -> None:
        name = self.fraud.cascade.registered_model_name
        while True:
            await asyncio.sleep(self.fraud.serving.model_poll_s)
            try:
                version = await asyncio.to_thread(self.registry.alias_version, name, CHAMPION)
                current = self.decider.model.version if self.decider else None
                if version is not None and version != current:
                    model = await asyncio.to_thread(self._load)
                    self._use(model)
                    log.warning("fraud champion v%s -> v%s", current, model.version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model poll failed: %r", exc)

    async def _poll_lists(self) -> None:
        while True:
            await asyncio.sleep(self.fraud.serving.lists_poll_s)
            try:
                lists, version = await asyncio.wait_for(read_lists(self.client), 1.0)
                if version is not None and version != self.lists_version:
                    self.lists = lists
                    self.lists_version = version
                    if self.decider is not None:
                        self.decider.lists = lists
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # Redis away: keep the rules in memory

    # ------------------------------------------------------------------ a store that lost its data

    def _store_lost(self) -> None:
        if self.warming is None or self.warming.done():
            self.warming = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        try:
            await self._warm_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away again, or the lake unreadable: the next probe or lost read tries again
            log.warning("fraud feature store warm-up failed: %r", exc)

    async def _warm_once(self) -> None:
        """Warm the store from the lake until it holds its epoch. One process at a time holds the
        warming key, kept alive while it works: the others wait, and take over within seconds
        when it dies. A store flushed during the warm-up is warmed again."""
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        while not await self.client.exists(EPOCH_KEY):
            if not await self.client.set(WARMING_KEY, token, nx=True, ex=WARMING_TTL_S):
                await asyncio.sleep(0.5)
                continue
            keep_alive = asyncio.create_task(self._hold_warming_key(token))
            try:
                await self._warm_from_lake()
            except StoreLostDuringWarmUp as exc:
                log.warning("%s: warming it again", exc)
            finally:
                keep_alive.cancel()
                await self.client.eval(RELEASE_SCRIPT, 1, WARMING_KEY, token)

    async def _hold_warming_key(self, token: str) -> None:
        while True:
            await asyncio.sleep(WARMING_TTL_S / 3)
            try:
                await self.client.eval(REFRESH_SCRIPT, 1, WARMING_KEY, token, WARMING_TTL_S)
            except Exception as exc:  # Redis away: the warm-up itself fails and says so
                log.debug("warming key not refreshed: %r", exc)

    async def _warm_from_lake(self) -> None:
        import redis

        registry = self.decider.model.cascade.registry if self.decider else registry_for(self.fraud)
        day = datetime.fromtimestamp(self.clock.now_ms() / 1000, UTC).date()
        started = time.perf_counter()
        history = await asyncio.to_thread(store_history, self.lake, registry, day)
        sync = redis.Redis.from_url(self.settings.redis_url)
        try:
            self.warmed = await asyncio.to_thread(
                warm_store,
                sync,
                history.transactions,
                registry,
                self.fraud.serving,
                history.labels,
                profiles=history.profiles,
            )
        finally:
            sync.close()
        log.warning(
            "fraud feature store warmed from the lake: %d transactions in %.1f s",
            self.warmed,
            time.perf_counter() - started,
        )

    async def store_state(self) -> str:
        """The feature store as a probe finds it: `ok` (warm), `warming` (a warm-up runs, here or
        in another process), `lost` (no epoch: empty, or restarted without its data; this probe
        starts the warm-up) or `unavailable` (no answer within the probe's timeout)."""
        if self.warming is not None and not self.warming.done():
            return "warming"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                pipe = self.client.pipeline(transaction=False)
                pipe.exists(EPOCH_KEY)
                pipe.exists(WARMING_KEY)
                warm, warming = await pipe.execute()
        except Exception as exc:
            log.debug("readiness probe: feature store unavailable: %r", exc)
            return "unavailable"
        if warm:
            return "ok"
        self._store_lost()
        return "warming" if warming else "lost"

    # ------------------------------------------------------------------ state

    async def drained(self) -> bool:
        """Every decision so far is published and handled by both consumer groups."""
        return not self.publisher.waiting and await self.consumer_stream.caught_up(CONSUMER_GROUPS)

    async def ready(self) -> dict:
        """Ready when a champion is loaded and the feature store is warm (checked on every probe, without traffic)."""
        decider = self.decider
        store = await self.store_state()
        return {
            "ready": decider is not None and store == "ok",
            "model_version": decider.model.version if decider else None,
            "feature_store": store,
            "lists_version": self.lists_version,
            "events_waiting": self.publisher.waiting,
            "events_published": self.publisher.published,
            "consumers": self.fraud.consumers,
        }

    # ------------------------------------------------------------------ routes

    def _time(self, ts: datetime | None, max_age_ms: int) -> int:
        now = self.clock.now_ms()
        if ts is None:
            return now
        ts_ms = epoch_ms(ts)
        tolerance = self.fraud.serving.future_tolerance_s
        if ts_ms > now + tolerance * 1000:
            raise _refused(
                "ts", f"ts is {(ts_ms - now) / 1000:,.0f} s ahead of the service clock (tolerance {tolerance:,.0f} s)"
            )
        if ts_ms < now - max_age_ms:
            raise _refused("ts", f"ts is older than the longest feature window ({max_age_ms / DAY_MS:g} days)")
        return ts_ms

    async def _decide(self, decider: Decider, tx: BaseModel) -> bytes:
        if tx.channel not in self.fraud.channels:
            raise _refused("channel", f"unknown channel; the settings' channels are {list(self.fraud.channels)}")
        cascade = decider.model.cascade
        ts_ms = self._time(tx.ts, cascade.registry.horizon_ms("customer"))
        fields = tx.model_dump()
        decision, features = await decider.decide(fields, ts_ms)
        self.publisher.put(
            event_fields(fields, ts_ms, decision, features, cascade.layer2_features)
        )  # on disk before the answer
        self.clock.accept(ts_ms)
        # Serialized here: the response model documents the body without validating it twice.
        return json.dumps(decision.as_dict()).encode()

    async def decide_shortcut(self, body: bytes) -> bytes | None:
        """POST /decisions without FastAPI's machinery: None for anything but a decision, which
        the route then answers (422, 503)."""
        decider = self.decider
        if decider is None:
            return None
        try:
            return await self._decide(decider, self.transaction_in.model_validate_json(body))
        except (ValidationError, RequestValidationError, SpoolFull):
            return None

    def case_service(self) -> CaseService:
        return CaseService(
            CASE,
            self.router(),
            start=self.start,
            stop=self.stop,
            ready=self.ready,
            hot={"/decisions": self.decide_shortcut},
        )

    def router(self) -> APIRouter:
        router = APIRouter()
        TransactionIn, LabelIn = self.transaction_in, self.label_in  # the body models, as the docs name them

        @router.post(
            "/decisions",
            response_model=DecisionOut,
            summary="Decide on one payment: approve, review or block",
            responses={503: {"description": "No champion model is loaded yet, or the decision spool is full"}},
        )
        async def decide(tx: TransactionIn) -> Response:
            decider = self.decider
            if decider is None:
                raise HTTPException(503, "no champion fraud model is loaded yet: train and promote one")
            try:
                return Response(await self._decide(decider, tx), media_type="application/json")
            except SpoolFull as exc:
                raise HTTPException(503, str(exc)) from None

        @router.post(
            "/labels",
            status_code=202,
            summary=(
                "Report a fraud label (chargeback) of an earlier payment; "
                "it counts in features once its delay has passed"
            ),
            responses={503: {"description": "The spool is full"}},
        )
        async def labels(label: LabelIn) -> dict:
            registry = self.decider.model.cascade.registry if self.decider else registry_for(self.fraud)
            ts_ms = self._time(label.ts, registry.history_span * DAY_MS)
            try:
                self.publisher.put(label_fields(label.tx_id, ts_ms, label.merchant_id, label.category, label.is_fraud))
            except SpoolFull as exc:
                raise HTTPException(503, str(exc)) from None
            return {"tx_id": label.tx_id, "accepted": True}

        return router


def service(settings: AppSettings) -> CaseService:
    return FraudService(settings).case_service()


def preflight(settings: AppSettings) -> None:
    """Checked once before the workers start: the stream consumers must not run once per worker."""
    if settings.workers > 1 and FraudSettings.load(configured_sources_path()).consumers == "inline":
        raise SystemExit(
            "several workers would each run the fraud stream consumers: set LAKEHOUSE_FRAUD_CONSUMERS=off "
            "and run `python -m lakehouse.fraud.consumer` beside the service"
        )
