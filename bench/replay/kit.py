"""A case's kit file as it grows with the simulated clock, and the replay's sources file.

The replay's folder stands for the user's: each instant, the kit's rows that had arrived by then (with the faults'
edits) are written there, and the sources file is the case's realdata mapping pointed at that folder. A file is
rewritten only when its rows changed, so the source-change sensor sees a file change exactly when the data did.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml

from bench.common import ROOT

KITS = ROOT.parent / "shared" / "realdata"


def mapping(case: str, folder: Path, settings: dict | None = None) -> dict:
    """realdata/<case>.yaml with its folder replaced by `folder` and its settings updated by `settings`."""
    section = yaml.safe_load((ROOT / "realdata" / f"{case}.yaml").read_text())[case]
    section["folder"] = str(folder)
    section["settings"] = {**section.get("settings", {}), **(settings or {})}
    return {case: section}


class GrowingFile:
    """One file of the user's folder, written when its rows change."""

    def __init__(self, path: Path):
        self.path = path
        self.digest: tuple[int, int] | None = None

    def write(self, frame: pl.DataFrame) -> bool:
        digest = (frame.height, int(frame.hash_rows(seed=0).sum()) if frame.height else 0)
        if digest == self.digest:
            return False
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        frame.write_parquet(tmp)
        tmp.replace(self.path)
        self.digest = digest
        return True
