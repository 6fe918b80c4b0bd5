"""The Parquet lake: tables as files under one root, local or on object storage.

A table is `<root>/<case>/<name>/data.parquet`; a partitioned table has one hive-style
folder per partition (`<root>/<case>/<name>/<key>=<value>/`) holding `data.parquet` or
several `part-*.parquet` files, so partitions written by parallel runs never touch the same
file. Every storage call of the project goes through this class (fsspec for listing and
bytes, Polars' object-store support for Parquet), so the root may be a local folder or an
`s3://` URL. Local writes go to a temporary file first and are renamed into place, so
readers never see half a file; an object store replaces an object atomically by itself.
"""

from __future__ import annotations

import re
import uuid

import fsspec
import polars as pl

DATA_FILE = "data.parquet"
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f=]|^\.\.?$|\.\.")

Partition = tuple[str, str]  # (key, value), e.g. ("day", "2026-11-20")


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def safe_value(value: str) -> str:
    """A partition value may name a folder, nothing more: no separators, control characters or '..'."""
    if not value or _UNSAFE.search(value):
        raise ValueError(
            f"partition value {value!r} cannot name a folder of the lake (separators, '..', '=' or control characters)"
        )
    return value


class Lake:
    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, _ = fsspec.core.url_to_fs(self.root)
        self.remote = is_remote(self.root)

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
        (locally; on an object store each object is replaced atomically, in turn)."""
        targets = {self.file_url(case, name, partition): df for (case, name, partition), df in tables.items()}
        if self.remote:
            for url, df in targets.items():
                df.write_parquet(url, statistics=True)
            return
        staged: list[tuple[str, str]] = []
        try:
            for url, df in targets.items():
                self.fs.makedirs(url.rsplit("/", 1)[0], exist_ok=True)
                tmp = f"{url}.{uuid.uuid4().hex}.tmp"
                staged.append((tmp, url))
                df.write_parquet(tmp, statistics=True)
        except BaseException:
            for tmp, _ in staged:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            raise
        for tmp, url in staged:
            self.fs.mv(tmp, url)

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

    def read_partitions(self, case: str, name: str, key: str, values: list[str] | None = None) -> pl.DataFrame:
        """Every Parquet file of the chosen partitions (all by default), columns unioned."""
        chosen = self.partitions(case, name, key) if values is None else list(values)
        files = []
        for value in chosen:
            folder = self.partition_url(case, name, (key, value))
            found = self.fs.glob(f"{folder}/*.parquet") if self.fs.exists(folder) else []
            files += sorted(self._url(f) for f in found)
        if not files:
            raise FileNotFoundError(
                f"no partition of {case}/{name} ({key} in {chosen if values is not None else 'any'}) under {self.root}: materialize it first"
            )
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
