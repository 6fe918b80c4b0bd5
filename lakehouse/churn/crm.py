"""Push churn scores to a CRM: a local SQLite outbox or a Salesforce-style REST API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypedDict

import httpx
import polars as pl

from lakehouse.common.http import post_json
from lakehouse.common.ops_db import connect, read_table


class CrmRecord(TypedDict):
    external_id: str  # the customer id
    score: float
    risk_tier: str
    action: str
    top_reasons: str
    snapshot_date: str  # ISO date
    model_version: str


CRM_FIELDS: tuple[str, ...] = tuple(CrmRecord.__annotations__)
OUTBOX_SCHEMA: dict[str, type[pl.DataType]] = {
    **{f: pl.String for f in CRM_FIELDS},
    "score": pl.Float64,
    "updated_at": pl.String,
}
# Salesforce composite sObject collections accept at most 200 records per request.
MAX_BATCH = 200


class Crm(Protocol):
    def upsert(self, records: Iterable[Mapping[str, Any]]) -> int: ...


class CrmError(RuntimeError):
    """The CRM answered 2xx but rejected some records (or answered something unexpected)."""

    def __init__(self, message: str, upserted: int, failures: Mapping[str, str]) -> None:
        super().__init__(message)
        self.upserted = upserted
        self.failures = dict(failures)


def normalise(records: Iterable[Mapping[str, Any]]) -> list[CrmRecord]:
    """Validate and coerce records (dates to ISO text); the last record per external_id wins."""
    out: dict[str, CrmRecord] = {}
    for r in records:
        if missing := [f for f in CRM_FIELDS if f not in r]:
            raise ValueError(f"CRM record {r.get('external_id')!r} lacks fields {missing}")
        if r["external_id"] is None or r["score"] is None:
            raise ValueError(f"CRM record {r['external_id']!r} has a null external_id or score")
        text = {f: "" if r[f] is None else str(r[f]) for f in CRM_FIELDS}
        out[text["external_id"]] = CrmRecord(
            external_id=text["external_id"],
            score=float(r["score"]),
            risk_tier=text["risk_tier"],
            action=text["action"],
            top_reasons=text["top_reasons"],
            snapshot_date=text["snapshot_date"],
            model_version=text["model_version"],
        )
    return list(out.values())


_VALUE_FIELDS = CRM_FIELDS[1:]
_OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS crm_outbox (
    external_id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    risk_tier TEXT NOT NULL,
    action TEXT NOT NULL,
    top_reasons TEXT NOT NULL,
    snapshot_date TEXT NOT NULL,
    model_version TEXT NOT NULL,
    updated_at TEXT NOT NULL
)"""
# Rows whose values are unchanged are left alone, so updated_at only moves on real changes.
_OUTBOX_UPSERT = f"""
INSERT INTO crm_outbox ({", ".join(CRM_FIELDS)}, updated_at)
VALUES ({", ".join(f":{f}" for f in CRM_FIELDS)}, :updated_at)
ON CONFLICT(external_id) DO UPDATE SET
    {", ".join(f"{f} = excluded.{f}" for f in (*_VALUE_FIELDS, "updated_at"))}
WHERE ({", ".join(f"crm_outbox.{f}" for f in _VALUE_FIELDS)})
    IS NOT ({", ".join(f"excluded.{f}" for f in _VALUE_FIELDS)})"""


class OutboxCrm:
    """CRM stand-in: upserts into the SQLite table `crm_outbox` keyed by external_id."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)

    def upsert(self, records: Iterable[Mapping[str, Any]]) -> int:
        rows = normalise(records)
        updated_at = datetime.now(UTC).isoformat()
        with closing(connect(self.db_path)) as conn, conn:
            conn.execute(_OUTBOX_DDL)
            conn.executemany(_OUTBOX_UPSERT, [{**row, "updated_at": updated_at} for row in rows])
        return len(rows)

    def read(self) -> pl.DataFrame:
        return read_table(self.db_path, "crm_outbox", OUTBOX_SCHEMA)


def _sobject(record: CrmRecord) -> dict[str, Any]:
    return {
        "attributes": {"type": "Account"},
        "External_Id__c": record["external_id"],
        "Churn_Score__c": record["score"],
        "Churn_Risk_Tier__c": record["risk_tier"],
        "Churn_Action__c": record["action"],
        "Churn_Top_Reasons__c": record["top_reasons"],
        "Churn_Snapshot_Date__c": record["snapshot_date"],
        "Churn_Model_Version__c": record["model_version"],
    }


class RestCrm:
    """Salesforce-style composite upsert of Accounts by External_Id__c.

    Retrying a batch is safe even if the server already applied it: upserts by external id
    are idempotent. The token only ever travels in the Authorization header.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        batch_size: int = MAX_BATCH,
        client: httpx.Client | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.url = f"{base_url.rstrip('/')}/composite/sobjects/Account/External_Id__c"
        self.batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {token}"}
        self._client = client
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s

    def upsert(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Upsert all records; returns how many the CRM accepted, raises CrmError on rejections."""
        rows = normalise(records)
        if not rows:
            return 0
        if self._client is None:
            with httpx.Client(timeout=30.0) as client:
                return self._send(client, rows)
        return self._send(self._client, rows)

    def _send(self, client: httpx.Client, rows: list[CrmRecord]) -> int:
        upserted = 0
        failures: dict[str, str] = {}
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            response = post_json(
                client,
                self.url,
                {"allOrNone": False, "records": [_sobject(r) for r in batch]},
                headers=self._headers,
                method="PATCH",  # Salesforce's upsert-by-external-id verb
                max_attempts=self._max_attempts,
                backoff_s=self._backoff_s,
            )
            try:
                results = response.json()
            except ValueError:
                results = None
            if not isinstance(results, list) or len(results) != len(batch):
                raise CrmError(
                    f"unexpected response from {self.url} for batch at offset {start}: {response.text[:200]!r}",
                    upserted,
                    failures,
                )
            # Results come back in request order, one per record.
            for row, result in zip(batch, results, strict=True):
                if result.get("success"):
                    upserted += 1
                else:
                    errors = result.get("errors") or [{}]
                    failures[row["external_id"]] = "; ".join(str(e.get("message", e)) for e in errors)
        if failures:
            sample = dict(list(failures.items())[:5])
            raise CrmError(f"CRM rejected {len(failures)} of {len(rows)} records, e.g. {sample}", upserted, failures)
        return upserted
