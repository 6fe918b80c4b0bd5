"""App factory. Each case contributes `lakehouse/<case>/api.py` with
`service(settings) -> CaseService`; the app mounts its router under `/<case>`, requires the
API key on it, starts and stops it with the app, and asks it whether it is ready.

A case may also name hot POST routes with a shortcut: a request with the right key is handed
to it before FastAPI's middleware, routing, dependencies and validation (several times the
work of a fraud decision); when the shortcut declines (returns None), the request goes
through the app unchanged, so errors, auth failures and the OpenAPI docs stay FastAPI's.
"""

from __future__ import annotations

import gc
import hmac
import importlib
import os
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse.common.home import LakehouseHome

CASES = ("forecast", "fraud", "triage")
API_KEY_HEADER = "X-API-Key"

# A hot route's shortcut: request body -> JSON response body, or None to let the app answer.
Shortcut = Callable[[bytes], Awaitable[bytes | None]]


@dataclass(frozen=True)
class ServingSettings:
    api_key: str
    home: LakehouseHome
    redis_url: str = "redis://127.0.0.1:6379/0"
    mlflow_uri: str | None = None  # default: the SQLite store under the home
    cases: tuple[str, ...] = CASES

    @classmethod
    def from_env(cls) -> ServingSettings:
        api_key = os.environ.get("LAKEHOUSE_API_KEY")
        if not api_key:
            raise SystemExit("LAKEHOUSE_API_KEY is not set: the online endpoints refuse to start without an API key")
        home = LakehouseHome(Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve())
        cases = tuple(c for c in os.environ.get("LAKEHOUSE_SERVING_CASES", ",".join(CASES)).split(",") if c)
        unknown = set(cases) - set(CASES)
        if unknown:
            raise SystemExit(f"LAKEHOUSE_SERVING_CASES: unknown case(s) {sorted(unknown)}; known: {list(CASES)}")
        return cls(
            api_key=api_key,
            home=home,
            redis_url=os.environ.get("LAKEHOUSE_REDIS_URL", cls.redis_url),
            mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI"),
            cases=cases,
        )

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or self.home.mlflow_uri


async def _nothing() -> None:
    return None


@dataclass
class CaseService:
    """What a case mounts: its routes, its start/stop hooks and its readiness."""

    name: str
    router: APIRouter
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing
    ready: Callable[[], dict] = field(default=lambda: {"ready": True})
    hot: dict[str, Shortcut] = field(default_factory=dict)  # POST path under /<case> -> shortcut


def load_services(settings: ServingSettings) -> list[CaseService]:
    return [importlib.import_module(f"lakehouse.{case}.api").service(settings) for case in settings.cases]


def _key_ok(key: bytes | None, expected: bytes) -> bool:
    return key is not None and hmac.compare_digest(key, expected)


class HotRoutes:
    """JSON POSTs to a hot route with the right key go to its shortcut first."""

    def __init__(self, app: ASGIApp, shortcuts: dict[str, Shortcut], api_key: bytes):
        self.app = app
        self.shortcuts = shortcuts
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shortcut = self.shortcuts.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        headers = dict(scope["headers"]) if shortcut else {}
        if not (shortcut and headers.get(b"content-type") == b"application/json" and _key_ok(headers.get(API_KEY_HEADER.lower().encode()), self.api_key)):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        answer = await shortcut(body)
        if answer is None:
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send)
        headers_out = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers_out})
        await send({"type": "http.response.body", "body": answer})


class ServingApp(FastAPI):
    """FastAPI with the hot routes in front of its whole middleware stack."""

    def __init__(self, *, shortcuts: dict[str, Shortcut], api_key: bytes, **kwargs):
        super().__init__(**kwargs)
        self.shortcuts = shortcuts
        self.api_key = api_key

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return HotRoutes(stack, self.shortcuts, self.api_key) if self.shortcuts else stack


def create_app(settings: ServingSettings, services: list[CaseService] | None = None) -> FastAPI:
    services = load_services(settings) if services is None else services
    expected = settings.api_key.encode()
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    async def require_api_key(key: str | None = Depends(header)) -> None:
        if not _key_ok(None if key is None else key.encode(), expected):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=f"missing or wrong {API_KEY_HEADER} header")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for service in services:
            await service.start()
        gc.freeze()  # what start loaded (models, libraries) stays out of the collector's full passes
        try:
            yield
        finally:
            for service in reversed(services):
                await service.stop()

    shortcuts = {f"/{service.name}{path}": shortcut for service in services for path, shortcut in service.hot.items()}
    app = ServingApp(
        shortcuts=shortcuts,
        api_key=expected,
        title="ML lakehouse online endpoints",
        description="Fraud decisions, forecast lookup and ticket triage, served from the champion models.",
        lifespan=lifespan,
    )

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="Readiness: every case has its model and stores")
    async def ready(request: Request) -> JSONResponse:
        cases = {service.name: service.ready() for service in services}
        ok = all(c.get("ready") for c in cases.values())
        return JSONResponse({"ready": ok, "cases": cases}, status_code=200 if ok else 503)

    for service in services:
        app.include_router(service.router, prefix=f"/{service.name}", tags=[service.name], dependencies=[Depends(require_api_key)])
    return app


def app_from_env() -> FastAPI:
    """The app configured by the environment (the factory uvicorn's workers import)."""
    return create_app(ServingSettings.from_env())
