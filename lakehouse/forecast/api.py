"""Forecast lookup for the ordering system: GET /forecast/stores/{store}/skus/{sku}.

Reads the published operational forecast from Redis (lakehouse/forecast/publish.py): one
round trip, a Lua script that resolves the current run and reads the vector atomically.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException

from lakehouse.forecast.publish import LOOKUP_SCRIPT, POINTER, RUN_PREFIX, current, field
from lakehouse.serving.app import CaseService, ServingSettings


def service(settings: ServingSettings) -> CaseService:
    import redis
    import redis.asyncio as aioredis

    state: dict = {}
    router = APIRouter()

    async def start() -> None:
        state["client"] = aioredis.Redis.from_url(settings.redis_url)
        state["lookup"] = state["client"].register_script(LOOKUP_SCRIPT)
        state["sync"] = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0)

    async def stop() -> None:
        await state["client"].aclose()
        state["sync"].close()

    @router.get("/stores/{store_id}/skus/{sku_id}", summary="D+1..D+14 operational forecast of one store x SKU")
    async def lookup(store_id: str, sku_id: str) -> dict:
        raw = await state["lookup"](keys=[POINTER], args=[field(store_id, sku_id), RUN_PREFIX])
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
