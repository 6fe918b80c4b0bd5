"""MLflow tracking and registry: one experiment per case, aliases instead of stages.

A newly trained version is registered with alias `challenger`. Its gate's verdict and the
alias `champion` belong to lakehouse.common.promotion, the one promotion path. Consumers load
`models:/<name>@champion`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

CHAMPION = "champion"
CHALLENGER = "challenger"

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Registry:
    def __init__(self, tracking_uri: str, artifact_root: str | Path):
        self.tracking_uri = tracking_uri
        self.artifact_root = str(artifact_root)
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (
            self.artifact_root if "://" in self.artifact_root else Path(self.artifact_root, name).resolve().as_uri()
        )
        return self.client.create_experiment(name, artifact_location=location)

    def activate(self) -> None:
        """Point MLflow's fluent API (log_model, load_model) at this store."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    @contextmanager
    def run(self, experiment: str, run_name: str, tags: dict[str, str] | None = None):
        """An active MLflow run bound to this store (the fluent API logs into it)."""
        import mlflow

        self.activate()
        with mlflow.start_run(experiment_id=self.experiment_id(experiment), run_name=run_name, tags=tags) as run:
            yield run

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        """Set an alias such as `challenger`; `champion` moves only through lakehouse.common.promotion."""
        if alias == CHAMPION:
            raise ValueError("`champion` moves only through lakehouse.common.promotion (promote or rollback)")
        self.client.set_registered_model_alias(model_name, alias, version)

    def alias_version(self, model_name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException:
            return None

    def version_metrics(self, model_name: str, version: str) -> dict[str, float]:
        run_id = self.client.get_model_version(model_name, version).run_id
        return dict(self.client.get_run(run_id).data.metrics)

    def model_uri(self, model_name: str, alias: str = CHAMPION) -> str:
        return f"models:/{model_name}@{alias}"
