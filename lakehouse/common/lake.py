"""The Parquet lake: tables as files under one root, local or on object storage.

A table is `<root>/<case>/<name>/data.parquet`; a partitioned table has one hive-style
folder per partition (`<root>/<case>/<name>/<key>=<value>/data.parquet`) so partitions
written by parallel runs never touch the same file. Local writes go to a temporary file
first and are renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl

DATA_FILE = "data.parquet"


def _is_remote(url: str) -> bool:
    return "://" in url


class Lake:
    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def table_url(self, case: str, name: str) -> str:
        return f"{self.root}/{case}/{name}"

    def file_url(self, case: str, name: str, partition: tuple[str, str] | None = None) -> str:
        url = self.table_url(case, name)
        if partition is not None:
            url = f"{url}/{partition[0]}={partition[1]}"
        return f"{url}/{DATA_FILE}"

    def glob(self, case: str, name: str, partitioned: bool = False) -> str:
        """Pattern DuckDB's read_parquet and Polars' scan_parquet understand."""
        return f"{self.table_url(case, name)}/{'*/' if partitioned else ''}{DATA_FILE}"

    def exists(self, case: str, name: str, partition: tuple[str, str] | None = None) -> bool:
        url = self.file_url(case, name, partition)
        if _is_remote(url):
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            return fs.exists(path)
        return Path(url).exists()

    def write(self, df: pl.DataFrame, case: str, name: str, partition: tuple[str, str] | None = None) -> str:
        self.write_many({(case, name, partition): df})
        return self.file_url(case, name, partition)

    def write_many(self, tables: dict[tuple[str, str, tuple[str, str] | None], pl.DataFrame]) -> None:
        """Write several tables as one step: every file is fully written before any is replaced."""
        staged: list[tuple[str, str]] = []
        try:
            for (case, name, partition), df in tables.items():
                url = self.file_url(case, name, partition)
                if _is_remote(url):
                    staged.append((url, url))
                    df.write_parquet(url)
                    continue
                Path(url).parent.mkdir(parents=True, exist_ok=True)
                tmp = f"{url}.{uuid.uuid4().hex}.tmp"
                df.write_parquet(tmp, statistics=True)
                staged.append((tmp, url))
        except BaseException:
            for tmp, url in staged:
                if tmp != url and os.path.exists(tmp):
                    os.remove(tmp)
            raise
        for tmp, url in staged:
            if tmp != url:
                os.replace(tmp, url)

    def read(self, case: str, name: str, partition: tuple[str, str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.file_url(case, name, partition))
