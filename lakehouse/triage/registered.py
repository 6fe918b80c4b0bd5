"""The triage classifier in MLflow: logged as a pyfunc model wrapping its saved directory, registered with alias
`challenger`, and loaded back by version or alias from the artifact store (routing, evaluation, serving)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lakehouse.triage.model import CONFIG_FILE, Trained, TriageClassifier
from lakehouse.triage.settings import TriageSettings


def _pyfunc_class():
    import mlflow.pyfunc

    class TriagePyfunc(mlflow.pyfunc.PythonModel):
        """MLflow wrapper of the saved classifier directory: text in, category, confidence and out-of-scope flag out."""

        def load_context(self, context):
            from lakehouse.common.settings import configured_sources_path

            settings = TriageSettings.load(configured_sources_path())
            self.classifier = TriageClassifier(
                context.artifacts["classifier"],
                batch_size=settings.inference.batch_size,
                max_tokens=settings.inference.max_tokens,
            )

        def predict(self, context, model_input, params=None):
            predicted = self.classifier.predict(model_input["text"].astype(str).tolist())
            return predicted.select("category", "confidence", "out_of_scope").to_pandas()

    return TriagePyfunc


def log_model(
    registry,
    experiment: str,
    trained: Trained,
    params: dict,
    metrics: dict,
    examples: list[str],
    settings: TriageSettings,
    run_name: str,
) -> tuple[str, str]:
    """Log params, metrics and the model (a pyfunc wrapping the classifier directory); register it as `challenger`."""
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from lakehouse.common.registry import CHALLENGER

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema(
            [ColSpec("string", "category"), ColSpec("double", "confidence"), ColSpec("boolean", "out_of_scope")]
        ),
    )
    with registry.run(experiment, run_name, tags={"case": experiment}) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(
            {k: float(v) for k, v in metrics.items() if v == v}
        )  # NaN (nothing auto-routed) is not logged
        mlflow.log_dict({"categories": trained.categories}, "categories.json")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_pyfunc_class()(),
            artifacts={"classifier": str(trained.directory)},
            signature=signature,
            input_example=pd.DataFrame({"text": examples}),
            registered_model_name=settings.registered_model_name,
        )
    version = str(info.registered_model_version)
    registry.set_alias(settings.registered_model_name, CHALLENGER, version)
    return version, run.info.run_id


def load_classifier(
    registry, settings: TriageSettings, alias: str | None = None, version: str | None = None
) -> tuple[TriageClassifier, str]:
    """The classifier of a registered version (or the one behind `models:/<name>@<alias>`) and its version, from
    the MLflow artifact store."""
    import mlflow

    version = version or registry.alias_version(settings.registered_model_name, alias)
    if version is None:
        raise LookupError(
            f"no version of {settings.registered_model_name} has alias '{alias}': train and promote one first"
        )
    registry.activate()
    local = Path(tempfile.mkdtemp(prefix="triage-model-"))
    try:
        path = mlflow.artifacts.download_artifacts(
            f"models:/{settings.registered_model_name}/{version}", dst_path=str(local)
        )
        directory = next(Path(path).rglob(CONFIG_FILE)).parent
        return TriageClassifier(
            directory, batch_size=settings.inference.batch_size, max_tokens=settings.inference.max_tokens
        ), version
    finally:
        shutil.rmtree(local, ignore_errors=True)
