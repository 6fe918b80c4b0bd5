"""Where everything a run writes lives: one project home directory.

`LAKEHOUSE_HOME` (default `./.lakehouse`) holds the DuckDB warehouse, the Parquet lake,
the MLflow store, the small operational SQLite tables (alerts, CRM outbox) and the local
Dagster instance. Deleting it resets the demo. Each location can be moved on its own
(`LAKEHOUSE_LAKE_URL` to object storage, `MLFLOW_TRACKING_URI` to a server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LakehouseHome:
    root: Path

    @classmethod
    def from_env(cls) -> "LakehouseHome":
        return cls(Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).resolve())

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def lake_url(self) -> str:
        return os.environ.get("LAKEHOUSE_LAKE_URL") or str(self.root / "lake")

    @property
    def mlflow_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow" / "artifacts"

    @property
    def ops_db(self) -> Path:
        return self.root / "ops.sqlite"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"
