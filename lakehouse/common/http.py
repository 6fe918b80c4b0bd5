"""Retrying JSON request shared by every outbound HTTP call of the project."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx


class DeliveryError(RuntimeError):
    """A request that could not be delivered. Never carries request headers (they may hold tokens)."""

    def __init__(self, url: str, attempts: int, reason: str, status: int | None = None, method: str = "POST") -> None:
        super().__init__(f"{method} {url} failed after {attempts} attempt(s): {reason}")
        self.url = url
        self.attempts = attempts
        self.reason = reason
        self.status = status


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):  # absent, or an HTTP-date: fall back to exponential backoff
        return None


def _display_url(url: str) -> str:
    # Userinfo and query strings commonly carry credentials; keep them out of error messages.
    return str(httpx.URL(url).copy_with(userinfo=b"", query=None, fragment=None))


def post_json(
    client: httpx.Client,
    url: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Send `payload` as JSON (POST unless `method` says otherwise), retrying 429, 5xx and transport errors with exponential backoff.

    Returns the first 2xx response; raises DeliveryError on any other status that is not
    retryable, or once `max_attempts` are used up.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    reason, status, cause = "", None, None
    for attempt in range(1, max_attempts + 1):
        delay = min(backoff_s * 2 ** (attempt - 1), max_backoff_s)
        try:
            response = client.request(method, url, json=payload, headers=headers)
        except httpx.TransportError as exc:
            reason, status, cause = f"{type(exc).__name__}: {exc}", None, exc
        else:
            if response.is_success:
                return response
            status, cause = response.status_code, None
            reason = f"HTTP {status} {response.text[:200]!r}"
            if status != 429 and status < 500:
                raise DeliveryError(_display_url(url), attempt, reason, status, method)
            if status == 429 and (retry_after := _retry_after(response)) is not None:
                delay = min(retry_after, max_backoff_s)
        if attempt < max_attempts:
            sleep(delay)
    raise DeliveryError(_display_url(url), max_attempts, reason, status, method) from cause
