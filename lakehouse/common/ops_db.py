"""Tiny SQLite store for small operational tables (CRM outbox, alerts)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import polars as pl


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating parent dirs) a WAL-mode database that waits up to 30 s on locks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def read_table(path: str | Path, table: str, schema: dict[str, type[pl.DataType]]) -> pl.DataFrame:
    """Whole `table` as a frame with `schema`; empty if the database or table does not exist yet."""
    if not Path(path).exists():
        return pl.DataFrame(schema=schema)
    with closing(connect(path)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
            return pl.DataFrame(schema=schema)
        columns = ", ".join(f'"{c}"' for c in schema)
        rows = conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY rowid').fetchall()
    return pl.DataFrame(rows, schema=schema, orient="row")
