"""Retrying JSON request shared by every outbound HTTP call of the project.

Retries are stamina's (exponential backoff, attempts bounded, instrumented through its hooks;
`stamina.set_testing` switches the waiting off in tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import stamina


class DeliveryError(RuntimeError):
    """A request that could not be delivered. Never carries request headers (they may hold tokens)."""

    def __init__(self, url: str, attempts: int, reason: str, status: int | None = None, method: str = "POST") -> None:
        super().__init__(f"{method} {url} failed after {attempts} attempt(s): {reason}")
        self.url = url
        self.attempts = attempts
        self.reason = reason
        self.status = status


class _RetryableStatus(Exception):
    """A 429 or 5xx answer, raised inside an attempt so that stamina retries it."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):  # absent, or an HTTP-date: fall back to exponential backoff
        return None


def _display_url(url: str) -> str:
    # Userinfo and query strings commonly carry credentials; keep them out of error messages.
    return str(httpx.URL(url).copy_with(userinfo=b"", query=None, fragment=None))


def _reason(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.text[:200]!r}"


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
) -> httpx.Response:
    """Send `payload` as JSON (POST unless `method` says otherwise), retrying 429, 5xx and transport errors.

    The n-th retry waits `min(backoff_s * 2 ** (n - 1), max_backoff_s)` seconds, no jitter; a
    429 with a numeric Retry-After waits that long instead (capped at `max_backoff_s`).
    Returns the first 2xx response; raises DeliveryError on any other status that is not
    retryable, or once `max_attempts` are used up.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")

    def retry_delay(exc: Exception) -> bool | float:
        # stamina's backoff hook: False gives up, True takes the exponential backoff, a number replaces it.
        if isinstance(exc, httpx.TransportError):
            return True
        if not isinstance(exc, _RetryableStatus):
            return False
        retry_after = _retry_after(exc.response) if exc.response.status_code == 429 else None
        return True if retry_after is None else min(retry_after, max_backoff_s)

    attempts = 0
    try:
        for attempt in stamina.retry_context(
            on=retry_delay,
            attempts=max_attempts,
            timeout=None,
            wait_initial=backoff_s,
            wait_max=max_backoff_s,
            wait_jitter=0.0,
        ):
            with attempt:
                attempts = attempt.num
                response = client.request(method, url, json=payload, headers=headers)
                if response.status_code == 429 or response.status_code >= 500:
                    raise _RetryableStatus(response)
                if not response.is_success:
                    raise DeliveryError(_display_url(url), attempts, _reason(response), response.status_code, method)
                return response
    except _RetryableStatus as exc:
        raise DeliveryError(
            _display_url(url), attempts, _reason(exc.response), exc.response.status_code, method
        ) from None
    except httpx.TransportError as exc:
        raise DeliveryError(_display_url(url), attempts, f"{type(exc).__name__}: {exc}", None, method) from exc
    raise AssertionError("unreachable: stamina either returns the response or re-raises the last error")
