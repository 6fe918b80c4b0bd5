"""Where routed tickets go: the teams' assignment table and the human validation queue (ops SQLite).

Both are keyed by ticket id, so publishing a month again updates rows instead of duplicating
them. A queued ticket becomes `validated` once an agent's label exists for it; validated
labels are what the next training set learns from.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import polars as pl

from lakehouse.common.ops_db import connect, read_table
from lakehouse.triage.model import AUTO, HUMAN

ASSIGNMENTS_SCHEMA = {
    "ticket_id": pl.String,
    "month": pl.String,
    "team": pl.String,
    "category": pl.String,
    "confidence": pl.Float64,
    "model_version": pl.String,
    "assigned_at": pl.String,
}
QUEUE_SCHEMA = {
    "ticket_id": pl.String,
    "month": pl.String,
    "suggested_category": pl.String,
    "confidence": pl.Float64,
    "reason": pl.String,
    "model_version": pl.String,
    "status": pl.String,
    "validated_category": pl.String,
    "agent_id": pl.String,
    "validated_at": pl.String,
}
_DDL = (
    """CREATE TABLE IF NOT EXISTS triage_team_assignments (
        ticket_id TEXT PRIMARY KEY, month TEXT NOT NULL, team TEXT NOT NULL, category TEXT NOT NULL,
        confidence REAL NOT NULL, model_version TEXT NOT NULL, assigned_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS triage_validation_queue (
        ticket_id TEXT PRIMARY KEY, month TEXT NOT NULL, suggested_category TEXT NOT NULL, confidence REAL NOT NULL,
        reason TEXT NOT NULL, model_version TEXT NOT NULL, status TEXT NOT NULL, validated_category TEXT,
        agent_id TEXT, validated_at TEXT)""",
)


def publish(db_path: str | Path, routes: pl.DataFrame, labels: pl.DataFrame) -> dict[str, int]:
    """Upsert the month's auto-routed tickets into the teams' table and the others into the queue."""
    auto = routes.filter(pl.col("route") == AUTO)
    queued = routes.filter(pl.col("route") == HUMAN).join(
        labels.select("ticket_id", pl.col("category").alias("validated_category"), "agent_id", "labelled_at"),
        on="ticket_id",
        how="left",
    )
    with closing(connect(db_path)) as conn, conn:
        for ddl in _DDL:
            conn.execute(ddl)
        conn.executemany(
            "INSERT OR REPLACE INTO triage_team_assignments VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r["ticket_id"],
                    r["month"],
                    r["team"],
                    r["category"],
                    r["confidence"],
                    r["model_version"],
                    str(r["created_at"]),
                )
                for r in auto.iter_rows(named=True)
            ],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO triage_validation_queue VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r["ticket_id"],
                    r["month"],
                    r["category"],
                    r["confidence"],
                    r["reason"],
                    r["model_version"],
                    "validated" if r["validated_category"] is not None else "pending",
                    r["validated_category"],
                    r["agent_id"],
                    None if r["labelled_at"] is None else str(r["labelled_at"]),
                )
                for r in queued.iter_rows(named=True)
            ],
        )
    return {
        "auto_routed": auto.height,
        "queued": queued.height,
        "validated": int(queued["validated_category"].is_not_null().sum()),
    }


def read_assignments(db_path: str | Path) -> pl.DataFrame:
    return read_table(db_path, "triage_team_assignments", ASSIGNMENTS_SCHEMA)


def read_queue(db_path: str | Path) -> pl.DataFrame:
    return read_table(db_path, "triage_validation_queue", QUEUE_SCHEMA)
