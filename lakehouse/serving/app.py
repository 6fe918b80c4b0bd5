"""App factory. Each case registers a module under the entry point group `lakehouse.services`
(pyproject.toml) exposing `service(settings) -> CaseService` and, optionally,
`preflight(settings)` (checked once before any worker starts); the app mounts the case's
router under `/<case>`, requires the API key on it, starts and stops it with the app, and asks
it whether it is ready. The app itself imports no case.

Every request body is read by the app's outermost layer, up to `max_body_bytes` (413 beyond,
before authentication or parsing). A case may also name hot POST routes with a shortcut: a
request with the right key is handed to it before FastAPI's middleware, routing, dependencies
and validation (several times the work of a fraud decision); when the shortcut declines
(returns None), the request goes through the app unchanged, so errors, auth failures and the
OpenAPI docs stay FastAPI's. No error echoes what was sent beyond a few dozen characters of a
value: validation errors (422) show a short excerpt, and every HTTP error's detail (404 with a
path parameter, ...) is bounded, whichever case's router raised it.
"""

from __future__ import annotations

import gc
import hmac
import inspect
import re
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse.common.home import LakehouseHome
from lakehouse.common.ids import ECHO_LIMIT, shown
from lakehouse.common.lake import Lake

API_KEY_HEADER = "X-API-Key"
SERVICES_GROUP = "lakehouse.services"
MAX_DETAIL_CHARS = 240  # of any text in an error's detail (values in it: at most ECHO_LIMIT characters)
_LONG_WORD = re.compile(rf"\S{{{ECHO_LIMIT + 1},}}")

# A hot route's shortcut: request body -> JSON response body, or None to let the app answer.
Shortcut = Callable[[bytes], Awaitable[bytes | None]]


def registered_cases() -> dict[str, EntryPoint]:
    """Case name -> the entry point of the module it registered (loaded on demand)."""
    return {ep.name: ep for ep in entry_points(group=SERVICES_GROUP)}


class ServingSettings(BaseSettings):
    """The online app's configuration, from the environment (README, Configuration)."""

    model_config = SettingsConfigDict(frozen=True, arbitrary_types_allowed=True, populate_by_name=True)

    api_key: str = Field(validation_alias="LAKEHOUSE_API_KEY")
    home: Annotated[LakehouseHome, NoDecode] = Field(
        LakehouseHome(Path(".lakehouse").resolve()), validation_alias="LAKEHOUSE_HOME"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="LAKEHOUSE_REDIS_URL")
    mlflow_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")  # default: SQLite under the home
    cases: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="LAKEHOUSE_SERVING_CASES"
    )  # () = every registered case
    workers: int = Field(1, ge=1, validation_alias="LAKEHOUSE_SERVING_WORKERS")
    max_body_bytes: int = Field(64 * 1024, ge=1, validation_alias="LAKEHOUSE_SERVING_MAX_BODY_BYTES")
    lake_url: str | None = Field(None, validation_alias="LAKEHOUSE_LAKE_URL")  # default: <home>/lake

    @field_validator("home", mode="before")
    @classmethod
    def _home(cls, value):
        return value if isinstance(value, LakehouseHome) else LakehouseHome(Path(value).resolve())

    @field_validator("cases", mode="before")
    @classmethod
    def _cases(cls, value):
        names = tuple(c.strip() for c in value.split(",") if c.strip()) if isinstance(value, str) else tuple(value)
        known = registered_cases()
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown case(s) {unknown}; registered: {sorted(known)}")
        return names or tuple(sorted(known))

    @classmethod
    def from_env(cls) -> ServingSettings:
        """The settings of a process about to serve; a missing key or an unknown case stops it here."""
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            if any(e["loc"] and e["loc"][0] == "LAKEHOUSE_API_KEY" for e in exc.errors()):
                problems = "LAKEHOUSE_API_KEY is not set: the online endpoints refuse to start without an API key"
            raise SystemExit(f"online app settings: {problems}") from None

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or self.home.mlflow_uri

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_url or str(self.home.lake))


async def _nothing() -> None:
    return None


@dataclass
class CaseService:
    """What a case mounts: its routes, its start/stop hooks and its readiness."""

    name: str
    router: APIRouter
    start: Callable[[], Awaitable[None]] = _nothing
    stop: Callable[[], Awaitable[None]] = _nothing
    ready: Callable[[], dict | Awaitable[dict]] = field(default=lambda: {"ready": True})  # asked on every probe
    hot: dict[str, Shortcut] = field(default_factory=dict)  # POST path under /<case> -> shortcut


def case_modules(settings: ServingSettings) -> list[ModuleType]:
    registered = registered_cases()
    return [registered[case].load() for case in settings.cases]


def load_services(settings: ServingSettings) -> list[CaseService]:
    return [module.service(settings) for module in case_modules(settings)]


def _key_ok(key: bytes | None, expected: bytes) -> bool:
    return key is not None and hmac.compare_digest(key, expected)


class BodyLimitAndHotRoutes:
    """The outermost layer: reads each request body up to the limit (413 beyond), then hands keyed JSON
    POSTs of a hot route to its shortcut, and everything else to the app with the body replayed."""

    def __init__(self, app: ASGIApp, shortcuts: dict[str, Shortcut], api_key: bytes, max_body_bytes: int):
        self.app = app
        self.shortcuts = shortcuts
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await self._too_large(send)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        shortcut = self.shortcuts.get(scope["path"]) if scope["method"] == "POST" else None
        if (
            shortcut
            and headers.get(b"content-type") == b"application/json"
            and _key_ok(headers.get(API_KEY_HEADER.lower().encode()), self.api_key)
        ):
            answer = await shortcut(body)
            if answer is not None:
                headers_out = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers_out})
                await send({"type": "http.response.body", "body": answer})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        answer = JSONResponse({"detail": f"request body larger than {self.max_body_bytes} bytes"}, status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": answer.raw_headers})
        await send({"type": "http.response.body", "body": answer.body})


def _excerpt(value) -> str:
    """At most a few dozen characters of a value, and its length when it was longer."""
    text = shown(value)
    return f"{text} ({len(value)} characters)" if isinstance(value, str) and len(value) > ECHO_LIMIT else text


def _bounded_text(text: str) -> str:
    text = _LONG_WORD.sub(lambda m: m[0][: ECHO_LIMIT - 1] + f"… ({len(m[0])} characters)", text)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def bounded(value):
    """An error's detail with every text bounded: no run of characters without a space longer than a
    few dozen, at most `MAX_DETAIL_CHARS` per text (keys of mappings included)."""
    if isinstance(value, str):
        return _bounded_text(value)
    if isinstance(value, dict):
        return {bounded(k) if isinstance(k, str) else k: bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(v) for v in value]
    return value


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with where and why, and at most a short excerpt of what was sent (never the input itself)."""
    errors = [
        {
            "loc": bounded(list(e.get("loc", ()))),
            "msg": bounded(e.get("msg", "")),
            "type": e.get("type", ""),
            **({"input": _excerpt(e["input"])} if "input" in e else {}),
        }
        for e in exc.errors()[:20]
    ]
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Any route's or the router's HTTP error (404, 405, 503 ...), its detail bounded: a path parameter
    of 60 KB does not come back in the answer."""
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": bounded(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


class ServingApp(FastAPI):
    """FastAPI with the hot routes in front of its whole middleware stack."""

    def __init__(self, *, shortcuts: dict[str, Shortcut], api_key: bytes, max_body_bytes: int, **kwargs):
        super().__init__(**kwargs)
        self.shortcuts = shortcuts
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    def build_middleware_stack(self) -> ASGIApp:
        return BodyLimitAndHotRoutes(
            super().build_middleware_stack(), self.shortcuts, self.api_key, self.max_body_bytes
        )


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
        max_body_bytes=settings.max_body_bytes,
        exception_handlers={RequestValidationError: _validation_error, StarletteHTTPException: _http_error},
        title="ML lakehouse online endpoints",
        description="Fraud decisions, forecast lookup and ticket triage, served from the champion models.",
        lifespan=lifespan,
    )

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="Readiness: every case has its model and stores")
    async def ready(request: Request) -> JSONResponse:
        cases = {}
        for service in services:
            answer = service.ready()
            cases[service.name] = await answer if inspect.isawaitable(answer) else answer
        ok = all(c.get("ready") for c in cases.values())
        return JSONResponse({"ready": ok, "cases": cases}, status_code=200 if ok else 503)

    for service in services:
        app.include_router(
            service.router, prefix=f"/{service.name}", tags=[service.name], dependencies=[Depends(require_api_key)]
        )
    return app


def app_from_env() -> FastAPI:
    """The app configured by the environment (the factory uvicorn's workers import)."""
    return create_app(ServingSettings.from_env())
