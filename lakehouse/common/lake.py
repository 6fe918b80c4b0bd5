"""The Parquet lake: tables as files under one root, local or on object storage.

A table is `<root>/<case>/<name>/data.parquet`; a partitioned table has one hive-style
folder per partition (`<root>/<case>/<name>/<key>=<value>/`) holding `data.parquet` or
several `part-*.parquet` files, so partitions written by parallel runs never touch the same
file. Every storage call of the project goes through this class (fsspec for listing and
bytes, Polars' object-store support for Parquet), so the root may be a local folder or an
`s3://` URL. Local writes go to a temporary file first and are renamed into place, so
readers never see half a file; an object store replaces an object atomically by itself.

Two runs writing the same partition cannot both succeed silently: each write leaves a marker
(`_writer.json`: the run and the time) beside the data, and a `Lake` that knows its run (`writer`,
`since`: when the run started reading) refuses to replace a table or partition another run wrote
after that moment: the later run fails, naming the run that wrote first, and writes nothing. Locally
the check and the replacement hold a lock file, so two writers cannot pass the check together.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import polars as pl

from lakehouse.common.ids import id_problem, shown

DATA_FILE = "data.parquet"
WRITER_FILE = "_writer.json"
LOCK_FILE = "_writer.lock"
LOCK_STALE_SECONDS = 600  # a lock older than this was left by a dead writer (a write takes seconds)

Partition = tuple[str, str]  # (key, value), e.g. ("day", "2026-11-20")


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def safe_value(value: str) -> str:
    """A partition value may name a folder, nothing more: the id rule (lakehouse.common.ids) holds."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"partition value {shown(value)} cannot name a folder of the lake: it {problem}")
    return value


class PartitionWritten(RuntimeError):
    """Another run wrote a table or partition this run is about to replace, after this run started."""


class MissingPartitions(FileNotFoundError):
    """Partitions a step needs are not in the lake; the message names them and what to materialize."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


class Lake:
    def __init__(self, root: str, writer: str | None = None, since: datetime | None = None):
        self.root = root.rstrip("/")
        self.fs, _ = fsspec.core.url_to_fs(self.root)
        self.remote = is_remote(self.root)
        self.writer = writer  # the run writing through this lake (None outside a run)
        self.since = since  # when that run started: a write by another run after it is a race

    # ------------------------------------------------------------------ addresses

    def table_url(self, case: str, name: str) -> str:
        return f"{self.root}/{case}/{name}"

    def partition_url(self, case: str, name: str, partition: Partition) -> str:
        key, value = partition
        return f"{self.table_url(case, name)}/{key}={safe_value(value)}"

    def file_url(self, case: str, name: str, partition: Partition | None = None, filename: str = DATA_FILE) -> str:
        folder = self.table_url(case, name) if partition is None else self.partition_url(case, name, partition)
        return f"{folder}/{filename}"

    def glob(self, case: str, name: str, partitioned: bool = False) -> str:
        """Pattern DuckDB's read_parquet and Polars' scan_parquet understand."""
        return f"{self.table_url(case, name)}/{'*/' if partitioned else ''}{DATA_FILE}"

    # ------------------------------------------------------------------ Parquet

    def exists(self, case: str, name: str, partition: Partition | None = None) -> bool:
        return self.fs.exists(self.file_url(case, name, partition))

    def write(self, df: pl.DataFrame, case: str, name: str, partition: Partition | None = None) -> str:
        self.write_many({(case, name, partition): df})
        return self.file_url(case, name, partition)

    def write_many(self, tables: dict[tuple[str, str, Partition | None], pl.DataFrame]) -> None:
        """Write several tables as one step: every file is fully written before any is replaced
        (locally; on an object store each object is replaced atomically, in turn). Refused as a whole,
        before anything is replaced, when another run wrote one of them since this run started."""
        targets = {self.file_url(case, name, partition): df for (case, name, partition), df in tables.items()}
        if self.remote:
            self._check_writers(targets)
            for url, df in targets.items():
                df.write_parquet(url, statistics=True)
                self._mark(url, df.height)
            return
        staged: list[tuple[str, str]] = []
        try:
            for url, df in targets.items():
                self.fs.makedirs(url.rsplit("/", 1)[0], exist_ok=True)
                tmp = f"{url}.{uuid.uuid4().hex}.tmp"
                staged.append((tmp, url))
                df.write_parquet(tmp, statistics=True)
            with self._locked(targets):
                self._check_writers(targets)
                for tmp, url in staged:
                    self.fs.mv(tmp, url)
                    self._mark(url, targets[url].height)
        except BaseException:
            for tmp, _ in staged:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            raise

    # ------------------------------------------------------------------ writers

    def last_writer(self, url: str) -> dict | None:
        """Who last wrote the folder of `url` (run, time, rows), when known."""
        marker = f"{url.rsplit('/', 1)[0]}/{WRITER_FILE}"
        try:
            return json.loads(self.fs.cat_file(marker))
        except (FileNotFoundError, ValueError):
            return None

    def _check_writers(self, targets) -> None:
        if self.since is None:
            return
        for url in targets:
            last = self.last_writer(url)
            if last and last.get("run") != self.writer and datetime.fromisoformat(last["at"]) >= self.since:
                folder = url.rsplit("/", 1)[0].removeprefix(self.root + "/")
                raise PartitionWritten(
                    f"{folder} was written by run {last.get('run')} at {last['at']} ({last.get('rows')} rows), after "
                    f"this run ({self.writer}) started at {self.since.isoformat()}: two runs wrote it at once, so this "
                    "one writes nothing. Check which file is right and run the load again to replace it"
                )

    def _mark(self, url: str, rows: int) -> None:
        record = {"run": self.writer or f"pid {os.getpid()}", "at": datetime.now(UTC).isoformat(), "rows": rows}
        self.fs.pipe_file(f"{url.rsplit('/', 1)[0]}/{WRITER_FILE}", json.dumps(record).encode())

    def _locked(self, targets):
        return _FolderLocks(self, sorted({url.rsplit("/", 1)[0] for url in targets}))

    def write_part(self, df: pl.DataFrame, case: str, name: str, partition: Partition) -> str:
        """Add one more file to a partition (append-only tables such as event logs)."""
        url = self.file_url(case, name, partition, f"part-{uuid.uuid4().hex}.parquet")
        if not self.remote:
            self.fs.makedirs(url.rsplit("/", 1)[0], exist_ok=True)
        df.write_parquet(url)
        return url

    def read(self, case: str, name: str, partition: Partition | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.file_url(case, name, partition))

    def partitions(self, case: str, name: str, key: str) -> list[str]:
        """The values of `key` that have at least one Parquet file, sorted."""
        prefix = f"{key}="
        root = self.table_url(case, name)
        if not self.fs.exists(root):
            return []
        values = []
        for entry in self.fs.ls(root, detail=False):
            folder = entry.rstrip("/").rsplit("/", 1)[-1]
            if folder.startswith(prefix) and any(f.endswith(".parquet") for f in self.fs.ls(entry, detail=False)):
                values.append(folder.removeprefix(prefix))
        return sorted(values)

    def read_partitions(
        self, case: str, name: str, key: str, values: list[str] | None = None, asset: str | None = None
    ) -> pl.DataFrame:
        """Every Parquet file of the chosen partitions (all stored ones by default), columns unioned: the one
        way to read partitions. A chosen partition that is not stored (or none at all) is one MissingPartitions
        error naming them and the asset to materialize (`asset`, by default `<case>/<name>`)."""
        stored = self.partitions(case, name, key)
        chosen = stored if values is None else list(dict.fromkeys(values))
        missing = [v for v in chosen if v not in set(stored)] if values is not None else []
        target = asset or f"{case}/{name}"
        if missing or not chosen:
            listed = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            what = f"no partition for {len(missing)} {key}(s) ({listed})" if missing else "no partition at all"
            raise MissingPartitions(
                f"{case}/{name} has {what} under {self.root}: materialize {target}"
                + (" for them first" if missing else " first"),
                missing,
            )
        files = []
        for value in chosen:
            folder = self.partition_url(case, name, (key, value))
            files += sorted(self._url(f) for f in self.fs.glob(f"{folder}/*.parquet"))
        return pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal_relaxed")

    # ------------------------------------------------------------------ other files

    def write_bytes(self, data: bytes, case: str, name: str, filename: str, partition: Partition | None = None) -> str:
        url = self.file_url(case, name, partition, filename)
        if self.remote:
            self.fs.pipe_file(url, data)
            return url
        self.fs.makedirs(url.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{url}.{uuid.uuid4().hex}.tmp"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, url)
        return url

    def read_bytes(self, case: str, name: str, filename: str, partition: Partition | None = None) -> bytes:
        return self.fs.cat_file(self.file_url(case, name, partition, filename))

    def _url(self, path: str) -> str:
        """fsspec returns paths without the protocol; Polars needs the URL back."""
        if not self.remote:
            return path
        protocol = self.root.split("://", 1)[0]
        return path if "://" in path else f"{protocol}://{path}"


class _FolderLocks:
    """Lock files in the folders a write replaces (local lakes): one writer at a time checks and replaces."""

    def __init__(self, lake: Lake, folders: list[str]):
        self.lake, self.folders, self.held = lake, folders, []

    def __enter__(self):
        for folder in self.folders:
            path = f"{folder}/{LOCK_FILE}"
            if os.path.exists(path) and time.time() - os.path.getmtime(path) > LOCK_STALE_SECONDS:
                os.remove(path)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = Path(path).read_text().strip() or "another writer"
                self.__exit__()
                raise PartitionWritten(
                    f"{folder.removeprefix(self.lake.root + '/')} is being written by {holder} right now: this run "
                    "writes nothing; run it again once that write is over"
                ) from None
            os.write(fd, (self.lake.writer or f"pid {os.getpid()}").encode())
            os.close(fd)
            self.held.append(path)
        return self

    def __exit__(self, *exc):
        for path in self.held:
            if os.path.exists(path):
                os.remove(path)
        self.held = []
