"""Data-quality alert records, their SQLite ledger and Slack-compatible webhook delivery."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import polars as pl

from lakehouse.common.http import DeliveryError, post_json
from lakehouse.common.ops_db import connect, read_table

Severity = Literal["WARN", "ERROR"]

ALERT_SCHEMA: dict[str, type[pl.DataType]] = {
    "evaluation_id": pl.String,
    "case_name": pl.String,
    "check_name": pl.String,
    "asset_key": pl.String,
    "partition": pl.String,
    "severity": pl.String,
    "value": pl.Float64,
    "threshold": pl.String,
    "description": pl.String,
    "evaluated_at": pl.String,
    "recorded_at": pl.String,
    "resolved_at": pl.String,  # a later evaluation of the same check and partition passed
    "resolved_by": pl.String,  # that evaluation's id
}

_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    evaluation_id TEXT PRIMARY KEY,
    case_name TEXT NOT NULL,
    check_name TEXT NOT NULL,
    asset_key TEXT NOT NULL,
    "partition" TEXT,
    severity TEXT NOT NULL,
    value REAL,
    threshold TEXT,
    description TEXT NOT NULL,
    evaluated_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    resolved_at TEXT,
    resolved_by TEXT
)"""
_COLUMNS = ", ".join(f'"{c}"' for c in ALERT_SCHEMA if not c.startswith("resolved_"))
_INSERT = f"INSERT OR IGNORE INTO alerts ({_COLUMNS}) VALUES ({', '.join('?' * (len(ALERT_SCHEMA) - 2))})"
_RESOLVE = """
UPDATE alerts SET resolved_at = ?, resolved_by = ?
WHERE asset_key = ? AND check_name = ? AND "partition" IS ? AND resolved_at IS NULL AND evaluated_at < ?
RETURNING evaluation_id"""
_ICONS: dict[str, str] = {"WARN": ":warning:", "ERROR": ":rotating_light:"}
# Slack rejects section text over 3000 chars with a 400, which would lose the whole alert.
_MAX_DESCRIPTION = 1000


@dataclass(frozen=True)
class Alert:
    evaluation_id: str  # unique id of the check evaluation; the dedup key
    case: str
    check_name: str
    asset_key: str
    partition: str | None
    severity: Severity
    value: float | None
    threshold: str | None
    description: str
    evaluated_at: datetime  # timezone-aware, stored as UTC

    def __post_init__(self) -> None:
        if self.severity not in _ICONS:
            raise ValueError(f"severity must be WARN or ERROR, got {self.severity!r}")
        if self.evaluated_at.tzinfo is None:
            raise ValueError("evaluated_at must be timezone-aware")


@dataclass(frozen=True)
class Resolution:
    """A passing evaluation: it closes the open alerts of the same check and partition evaluated before it."""

    evaluation_id: str
    check_name: str
    asset_key: str
    partition: str | None
    evaluated_at: datetime


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def _table(conn) -> None:
    conn.execute(_DDL)
    present = {row[1] for row in conn.execute("PRAGMA table_info(alerts)")}
    for column in ("resolved_at", "resolved_by"):  # a ledger written before alerts could clear
        if column not in present:
            conn.execute(f"ALTER TABLE alerts ADD COLUMN {column} TEXT")


def record_alerts(db_path: str | Path, alerts: Iterable[Alert]) -> list[Alert]:
    """Insert alerts into the `alerts` table; return only those whose evaluation_id was new."""
    recorded_at = _iso(datetime.now(UTC))
    new: list[Alert] = []
    with closing(connect(db_path)) as conn, conn:
        _table(conn)
        for a in alerts:
            row = (
                a.evaluation_id,
                a.case,
                a.check_name,
                a.asset_key,
                a.partition,
                a.severity,
                a.value,
                a.threshold,
                a.description,
                _iso(a.evaluated_at),
                recorded_at,
            )
            if conn.execute(_INSERT, row).rowcount:
                new.append(a)
    return new


def resolve_alerts(db_path: str | Path, resolutions: Iterable[Resolution]) -> list[str]:
    """Close the open alerts each passing evaluation clears; returns the closed alerts' evaluation ids."""
    closed: list[str] = []
    with closing(connect(db_path)) as conn, conn:
        _table(conn)
        for r in sorted(resolutions, key=lambda r: r.evaluated_at):
            at = _iso(r.evaluated_at)
            rows = conn.execute(_RESOLVE, (at, r.evaluation_id, r.asset_key, r.check_name, r.partition, at))
            closed += [row[0] for row in rows.fetchall()]
    return closed


def open_alerts(db_path: str | Path) -> pl.DataFrame:
    return read_alerts(db_path).filter(pl.col("resolved_at").is_null())


def read_alerts(db_path: str | Path) -> pl.DataFrame:
    return read_table(db_path, "alerts", ALERT_SCHEMA)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack incoming-webhook JSON: plain `text` fallback plus one mrkdwn section."""
    value = "n/a" if alert.value is None else f"{alert.value:.6g}"
    where = alert.asset_key + (f" [{alert.partition}]" if alert.partition else "")
    lines = [
        f"{_ICONS[alert.severity]} *{alert.severity}* in case *{_esc(alert.case)}*",
        f"*Check:* {_esc(alert.check_name)}",
        f"*Asset:* `{_esc(alert.asset_key)}`",
        f"*Partition:* {_esc(alert.partition or 'n/a')}",
        f"*Value:* {value} vs *threshold:* {_esc(alert.threshold or 'n/a')}",
        f"*Evaluated at:* {_iso(alert.evaluated_at)}",
        _esc(alert.description[:_MAX_DESCRIPTION]),
    ]
    return {
        "text": _esc(f"[{alert.severity}] {alert.case}: {alert.check_name} on {where}"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def post_webhook(url: str, alerts: Iterable[Alert], client: httpx.Client | None = None) -> int:
    """POST one Slack payload per alert; returns the number delivered."""
    if client is None:
        with httpx.Client(timeout=10.0) as own:
            return post_webhook(url, alerts, own)
    sent = 0
    for alert in alerts:
        try:
            post_json(client, url, slack_payload(alert))
        except DeliveryError as exc:
            # A webhook URL's path is its secret: report the host only.
            parsed = httpx.URL(url)
            redacted = f"{parsed.scheme}://{parsed.host}/[redacted]"
            raise DeliveryError(redacted, exc.attempts, exc.reason, exc.status) from exc.__cause__
        sent += 1
    return sent
