"""Where everything a run writes lives: one project home directory.

`LAKEHOUSE_HOME` (default `./.lakehouse`) holds the DuckDB warehouse, the Parquet lake,
the MLflow store, the small operational SQLite tables (alerts, CRM outbox), reports and
the local Dagster instance. Deleting it resets the demo. The lake and MLflow can move
elsewhere by configuration (see resources/).
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LakehouseHome:
    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

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
