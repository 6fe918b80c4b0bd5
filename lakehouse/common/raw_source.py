"""One seam between a case's raw assets and where its rows come from: the user's files or the demo world.

A raw asset asks its case's `CaseRaw` for a source and loads the selected keys (partitions, or none
for unpartitioned tables) through it; it never knows which one it got:

* `FileSource`: the sources file lists the case; its loader maps and validates the user's files
  (`lakehouse.common.sources`), refusing anything that breaks a rule before a row is written;
* `GeneratorSource`: the case is not listed; the case's generator function (in its domain package,
  which imports its world module) makes the rows and validates them through the same schemas.

Both return a `RawBatch`: the validated tables the case's store step takes, where the rows came from,
and what was skipped (rows of partitions the run did not select, under `rows_outside_selection: skip`)
or ignored (their columns no mapping reads). Generator settings (scale, seed, drills) are refused when
the case reads the user's files: a listed case never falls back to, or mixes with, the generator.

Fingerprints of a user's source, per partition (`partition_fingerprints`), recorded for each load
(`record_fingerprints`, in the operational SQLite store) let the source-change sensor (sensors/sources.py)
find a past period whose file was corrected, or a period that arrived after its load was tried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from lakehouse.common.ops_db import connect
from lakehouse.common.sources import CaseSource


@dataclass(frozen=True)
class Request:
    """What a run asks of a source."""

    keys: Sequence[str]  # the selected partitions (empty for unpartitioned tables)
    today: date
    settings: Any  # the case's settings object
    allowed: Sequence[str] = ()  # every partition the calendar holds (time-partitioned cases)
    replace_with_empty: bool = False  # a selected partition without rows is stored empty, on purpose
    log: Callable[[str], None] = print
    inputs: Mapping[str, Any] = field(default_factory=dict)  # what the run already holds (stored master tables)


@dataclass
class RawBatch:
    """Validated rows, ready for the case's store step."""

    tables: dict[str, Any]  # table name -> frame (or whatever the case's store step takes)
    origin: str  # where the rows came from: the folder, or the generator and its configuration
    skipped: int = 0  # rows of partitions the run did not select (`rows_outside_selection: skip`)
    ignored: dict[str, list[str]] = field(default_factory=dict)  # per table, their columns no mapping reads
    labels: dict[str, str] = field(default_factory=dict)  # per table, the file (and mapping) it came from
    rows_outside_selection: str = "refuse"  # the mapping's rule for rows of partitions the run did not select


class RawSource(Protocol):
    origin: str

    def load(self, request: Request) -> RawBatch: ...


FilesLoader = Callable[[CaseSource, Request], RawBatch]
Generator = Callable[[Mapping[str, Any], Request], RawBatch]
Check = Callable[[RawBatch, Request], RawBatch]


class GeneratorOnly(ValueError):
    """Generator settings given for a case that reads the user's files."""


@dataclass(frozen=True)
class FileSource:
    source: CaseSource
    read: FilesLoader

    @property
    def origin(self) -> str:
        return str(self.source.folder)

    def load(self, request: Request) -> RawBatch:
        request.log(f"loading from {self.source.folder} ({self.source.origin})")
        return self.read(self.source, request)


@dataclass(frozen=True)
class GeneratorSource:
    overrides: Mapping[str, Any]
    generate: Generator
    check: Check | None = None
    origin: str = "generator"

    def load(self, request: Request) -> RawBatch:
        batch = self.generate(self.overrides, request)
        return self.check(batch, request) if self.check is not None else batch


@dataclass(frozen=True)
class CaseRaw:
    """A case's two ways to raw rows: its files loader and its generator (both in its domain package). A
    generator whose tables need the case's rules across tables gets them from `check` (the checks the files
    loader runs after mapping)."""

    case: str
    files: FilesLoader
    generator: Generator
    check: Check | None = None

    def source(self, case_source: CaseSource | None, generator_settings: Mapping[str, Any]) -> RawSource:
        """The user's files when the sources file lists the case, else the generator with the settings given
        (None values keep the generator's defaults)."""
        given = {k: v for k, v in generator_settings.items() if v is not None}
        if case_source is None:
            return GeneratorSource(given, self.generator, self.check)
        if given:
            raise GeneratorOnly(
                f"{', '.join(sorted(given))}: generator settings do not apply, the {self.case} case reads the files "
                f"of {case_source.origin} (the sources file lists it)"
            )
        return FileSource(case_source, self.files)


# --------------------------------------------------------------------------- fingerprints of a user's source


FINGERPRINTS = "source_fingerprints"
_FINGERPRINTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {FINGERPRINTS} (
    case_name TEXT NOT NULL,
    "partition" TEXT NOT NULL,
    fingerprint TEXT,
    run_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (case_name, "partition")
)"""


def partition_fingerprints(frame: pl.DataFrame, partitions: pl.Series) -> dict[str, str]:
    """Per partition of `frame` (its rows' keys in `partitions`), the row count and an order-free hash of the rows'
    content: two sums of 32-bit halves of each row's hash, so the same rows in any order give the same print and
    any changed value changes it (up to hash collisions). The hash is Polars' own: a print is comparable with
    prints of the same Polars version only (`fingerprint_scheme`)."""
    if frame.height == 0:
        return {}
    hashed = frame.hash_rows(seed=0)
    keyed = pl.DataFrame(
        {"partition": partitions, "low": hashed % (1 << 32), "high": hashed // (1 << 32)},
        schema={"partition": pl.String, "low": pl.UInt64, "high": pl.UInt64},
    )
    summed = keyed.group_by("partition").agg(pl.len().alias("rows"), pl.col("low").sum(), pl.col("high").sum())
    return {p: f"{rows}:{low:x}:{high:x}" for p, rows, low, high in summed.iter_rows()}


def fingerprint_scheme() -> str:
    return f"polars-{pl.__version__}"


def loaded_fingerprints(db_path: str | Path, case: str) -> dict[str, str | None]:
    """The print of each partition as the last load of it (successful or not) found the source."""
    with closing(connect(db_path)) as conn, conn:
        conn.execute(_FINGERPRINTS_DDL)
        rows = conn.execute(
            f'SELECT "partition", fingerprint FROM {FINGERPRINTS} WHERE case_name = ?', (case,)
        ).fetchall()
    return dict(rows)


def record_fingerprints(db_path: str | Path, case: str, prints: Mapping[str, str | None], run_id: str) -> None:
    """Record what a load read, per partition (None: the source had no row for it)."""
    now = datetime.now(UTC).isoformat()
    with closing(connect(db_path)) as conn, conn:
        conn.execute(_FINGERPRINTS_DDL)
        conn.executemany(
            f'INSERT OR REPLACE INTO {FINGERPRINTS} (case_name, "partition", fingerprint, run_id, recorded_at) '
            "VALUES (?, ?, ?, ?, ?)",
            [(case, p, fp, run_id, now) for p, fp in prints.items()],
        )
