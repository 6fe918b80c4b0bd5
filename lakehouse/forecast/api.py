"""Forecast lookup for the ordering system: GET /forecast/stores/{store}/skus/{sku}.

Reads the published operational forecast from Redis (lakehouse/forecast/publish.py): one
round trip, a Lua script that resolves the current run and reads the vector atomically.
When Redis cannot be reached the lookup answers 503 with the reason, so the ordering system
retries or falls back instead of reading a server error.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException

from lakehouse.forecast.publish import LOOKUP_SCRIPT, POINTER, RUN_PREFIX, current, field
from lakehouse.serving.app import CaseService, ServingSettings

STORE_TIMEOUT_S = 1.0  # a lookup waits at most this long for Redis before answering 503


def service(settings: ServingSettings) -> CaseService:
    import redis
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as StoreConnectionError
    from redis.exceptions import TimeoutError as StoreTimeoutError

    state: dict = {}
    router = APIRouter()

    async def start() -> None:
        state["client"] = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=STORE_TIMEOUT_S, socket_connect_timeout=STORE_TIMEOUT_S
        )
        state["lookup"] = state["client"].register_script(LOOKUP_SCRIPT)
        state["sync"] = redis.Redis.from_url(
            settings.redis_url, socket_timeout=STORE_TIMEOUT_S, socket_connect_timeout=STORE_TIMEOUT_S
        )

    async def stop() -> None:
        await state["client"].aclose()
        state["sync"].close()

    @router.get(
        "/stores/{store_id}/skus/{sku_id}",
        summary="Operational forecast of one store x SKU",
        responses={
            404: {"description": "nothing published for this store x SKU"},
            503: {"description": "the forecast store (Redis) is unreachable"},
        },
    )
    async def lookup(store_id: str, sku_id: str) -> dict:
        try:
            raw = await state["lookup"](keys=[POINTER], args=[field(store_id, sku_id), RUN_PREFIX])
        except (StoreConnectionError, StoreTimeoutError, OSError) as exc:
            raise HTTPException(
                503, detail=f"the forecast store is unreachable ({type(exc).__name__}: {exc}); retry later"
            ) from None
        if raw is None:
            raise HTTPException(404, detail=f"no published forecast for store {store_id!r}, SKU {sku_id!r}")
        return json.loads(raw)

    def ready() -> dict:
        try:
            published = current(state["sync"])
        except Exception as exc:  # Redis down or not started: not ready, and say why
            return {"ready": False, "error": str(exc)}
        return {"ready": published["run_id"] is not None, **published}

    return CaseService("forecast", router, start=start, stop=stop, ready=ready)
