"""Training, evaluation and scoring of the churn model (LightGBM), independent of Dagster."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from lakehouse.churn.settings import CASE, ChurnSettings
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.common.settings import DateRange

FEATURES = (
    "usage_trend",
    "minutes_28d",
    "minutes_91d",
    "logins_28d",
    "active_days_28d",
    "days_since_last_login",
    "activation_score",
    "tickets_30d",
    "incident_tickets_30d",
    "open_tickets",
    "csat_90d",
    "late_payments_180d",
    "overdue_amount",
    "disputes_180d",
    "tenure_days",
    "employees",
    "mrr",
    "tier_rank",
    "size_rank",
    "is_annual",
    "days_to_renewal",
)
LABEL = "churned_30d"


def feature_matrix(df: pl.DataFrame, features: tuple[str, ...] | list[str] = FEATURES) -> np.ndarray:
    """The model's inputs in its order (`features`: a booster's own `feature_name()` for an older version)."""
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(f"feature table lacks columns {missing}")
    return df.select(pl.col(f).cast(pl.Float64) for f in features).to_numpy()


def predict(booster, df: pl.DataFrame) -> np.ndarray:
    """Churn probabilities of a version's booster on feature rows, whatever feature list it was trained on."""
    return booster.predict(feature_matrix(df, booster.feature_name()))


@dataclass(frozen=True)
class OutOfTimeSplit:
    """Train / early-stopping validation / test by snapshot date (`evaluation` settings).

    The windows leave `gap` between periods: a training snapshot T sees its label up to
    T + 30 days, so nothing of the test period is seen in training or early stopping.
    """

    train: DateRange
    validation: DateRange
    test: DateRange

    @classmethod
    def from_settings(cls, first: date, last_matured: date, settings: ChurnSettings) -> OutOfTimeSplit:
        windows = settings.evaluation.resolve(first, last_matured)
        return cls(windows["train"], windows["validation"], windows["test"])

    def frames(self, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        d = pl.col("snapshot_date")
        return tuple(df.filter(d.is_between(w.start, w.end)) for w in (self.train, self.validation, self.test))

    def trained_until(self, label_days: int) -> date:
        """The last day the model learnt from: the end of the validation period's last label window."""
        return self.validation.end + timedelta(days=label_days - 1)

    def __str__(self) -> str:
        return ", ".join(
            f"{name} {w.start}..{w.end}"
            for name, w in (("train", self.train), ("validation", self.validation), ("test", self.test))
        )


def recall_at_top(labels: pl.Series, scores: np.ndarray, snapshots: pl.Series, fraction: float) -> float:
    """Share of churners found by contacting the top `fraction` of each weekly list, pooled."""
    df = pl.DataFrame({"y": labels.cast(pl.Int64), "s": scores, "snap": snapshots})
    ranked = df.with_columns(
        rank=pl.col("s").rank("ordinal", descending=True).over("snap"),
        n=pl.len().over("snap"),
    )
    found = ranked.filter(pl.col("rank") <= (pl.col("n") * fraction).floor())["y"].sum()
    total = df["y"].sum()
    return float(found / total) if total else float("nan")


def evaluate(labels: pl.Series, scores: np.ndarray, snapshots: pl.Series, settings: ChurnSettings) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = labels.cast(pl.Int64).to_numpy()
    if y.min() == y.max():
        raise ValueError("evaluation needs both churners and non-churners")
    return {
        "auc_roc": float(roc_auc_score(y, scores)),
        "auc_pr": float(average_precision_score(y, scores)),
        "recall_top20": recall_at_top(labels, scores, snapshots, settings.top_fraction),
        "positives": int(y.sum()),
        "rows": int(y.size),
        "base_rate": float(y.mean()),
    }


@dataclass
class TrainedModel:
    booster: object  # lightgbm.Booster
    split: OutOfTimeSplit
    metrics: dict[str, float]
    shap_importance: pl.DataFrame  # feature, mean_abs_shap, share
    test_scores: pl.DataFrame  # snapshot_date, customer_id, score, churned_30d
    params: dict
    example_features: pl.DataFrame  # a few test rows, for the MLflow signature


def train(training_set: pl.DataFrame, settings: ChurnSettings, seed: int = 0) -> TrainedModel:
    """Fit on the training period, stop early on the validation period, report on the test period."""
    import lightgbm as lgb

    matured = training_set.filter(pl.col("matured_30d"))
    if matured.is_empty():
        raise ValueError("no matured labels: the history is shorter than the label horizon")
    split = OutOfTimeSplit.from_settings(matured["snapshot_date"].min(), matured["snapshot_date"].max(), settings)
    train_df, valid_df, test_df = split.frames(matured)
    for name, part in (("training", train_df), ("validation", valid_df), ("test", test_df)):
        if part.is_empty() or part[LABEL].sum() == 0:
            raise ValueError(f"the {name} period ({split}) has no churners: not enough history")
    params = {**settings.lgbm_params, "seed": seed, "deterministic": True}
    train_set = lgb.Dataset(
        feature_matrix(train_df), train_df[LABEL].cast(pl.Int64).to_numpy(), feature_name=list(FEATURES)
    )
    valid_set = lgb.Dataset(feature_matrix(valid_df), valid_df[LABEL].cast(pl.Int64).to_numpy(), reference=train_set)
    booster = lgb.train(
        # Early stopping on log loss keeps scores calibrated: the tiers and the A/B cut
        # (score > 0.65) are probabilities, not just a ranking.
        {**params, "metric": "binary_logloss"},
        train_set,
        num_boost_round=settings.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    x_test = feature_matrix(test_df)
    scores = booster.predict(x_test, num_iteration=booster.best_iteration)
    metrics = evaluate(test_df[LABEL], scores, test_df["snapshot_date"], settings)
    metrics["best_iteration"] = int(booster.best_iteration)
    # TreeSHAP costs about half a millisecond a row here: the importance is estimated on a sample of the test rows.
    explained = x_test[np.random.default_rng(seed).permutation(len(x_test))[: settings.importance_sample_rows]]
    contributions = booster.predict(explained, num_iteration=booster.best_iteration, pred_contrib=True)[:, :-1]
    mean_abs = np.abs(contributions).mean(axis=0)
    importance = (
        pl.DataFrame({"feature": FEATURES, "mean_abs_shap": mean_abs})
        .with_columns(share=pl.col("mean_abs_shap") / pl.col("mean_abs_shap").sum())
        .sort("mean_abs_shap", descending=True)
    )
    test_scores = test_df.select("snapshot_date", "customer_id", LABEL).with_columns(score=pl.Series(scores))
    example = test_df.head(5).select(pl.col(f).cast(pl.Float64) for f in FEATURES)
    return TrainedModel(booster, split, metrics, importance, test_scores, params, example)


@dataclass
class ScoredBatch:
    scores: pl.DataFrame
    seconds: float


def score(
    booster, features: pl.DataFrame, settings: ChurnSettings, model_version: str, shadow: bool = False
) -> ScoredBatch:
    """Scores, risk tiers with their action, and, for the tiers Customer Success acts on, the
    top reasons (largest positive SHAP contributions). `shadow` marks the scores of a version that
    is not the champion: written and evaluated, never published.

    Exact SHAP costs about a thousand times a prediction, so it is computed only where a
    CSM will read it: a million-customer base stays within the weekly batch budget.
    """
    started = time.perf_counter()
    names = booster.feature_name()
    x = feature_matrix(features, names)
    probability = booster.predict(x)
    tier_index = np.zeros(probability.size, dtype=np.int64)
    for i, tier in reversed(list(enumerate(settings.tiers))):
        tier_index[probability >= tier.min_score] = i
    reasons = np.full(probability.size, "", dtype=object)
    explain = np.isin(tier_index, [i for i, t in enumerate(settings.tiers) if t.name in settings.explained_tiers])
    if explain.any():
        reasons[explain] = top_reasons(booster, x[explain], settings.top_reasons, names)
    scores = features.select("snapshot_date", "customer_id").with_columns(
        score=pl.Series(probability),
        risk_tier=pl.Series(np.array([t.name for t in settings.tiers])[tier_index]),
        action=pl.Series(np.array([t.action for t in settings.tiers])[tier_index]),
        top_reasons=pl.Series(reasons, dtype=pl.String),
        model_version=pl.lit(model_version),
        shadow=pl.lit(shadow),
    )
    return ScoredBatch(scores, time.perf_counter() - started)


def top_reasons(booster, x: np.ndarray, k: int, features: tuple[str, ...] | list[str] = FEATURES) -> list[str]:
    """'feature (+contribution)' for the k largest positive SHAP contributions of each row."""
    contributions = booster.predict(x, pred_contrib=True)[:, :-1]
    top = np.argsort(-contributions, axis=1)[:, :k]
    values = np.take_along_axis(contributions, top, axis=1)
    names = np.array(features)[top]
    return [
        "; ".join(f"{n} (+{v:.2f})" for n, v in zip(row_n, row_v, strict=True) if v > 0)
        for row_n, row_v in zip(names, values, strict=True)
    ]


def log_model(registry: Registry, trained: TrainedModel, settings: ChurnSettings, run_name: str) -> tuple[str, str]:
    """Log params, metrics, features, SHAP importance and the model; register it as `challenger`.

    The model's requirements are given (the LightGBM it was trained with): MLflow would otherwise infer
    them by loading the model in a subprocess, seconds per training. Returns (registered version, MLflow run id).
    """
    import lightgbm
    import mlflow
    from mlflow.models import infer_signature

    example = trained.example_features.to_pandas()
    with registry.run(CASE, run_name, tags={"case": CASE}) as run:
        split = {
            f"split_{period}_{end}": str(getattr(window, end))
            for period, window in vars(trained.split).items()
            for end in ("start", "end")
        }
        mlflow.log_params({**trained.params, **split, "n_features": len(FEATURES)})
        mlflow.log_metrics({k: float(v) for k, v in trained.metrics.items()})
        mlflow.log_dict({"features": list(FEATURES), "label": LABEL}, "features.json")
        mlflow.log_table(trained.shap_importance.to_pandas(), "shap_importance.json")
        info = mlflow.lightgbm.log_model(
            trained.booster,
            name="model",
            signature=infer_signature(example, trained.booster.predict(example.to_numpy())),
            input_example=example,
            registered_model_name=settings.registered_model_name,
            pip_requirements=[f"lightgbm=={lightgbm.__version__}"],
        )
    version = str(info.registered_model_version)
    registry.set_alias(settings.registered_model_name, CHALLENGER, version)
    return version, run.info.run_id


def load_model(registry: Registry, settings: ChurnSettings, alias: str = CHAMPION):
    """(the lightgbm.Booster behind `models:/<name>@<alias>`, the version the alias points to)."""
    version = registry.alias_version(settings.registered_model_name, alias)
    if version is None:
        raise LookupError(
            f"no model version has alias '{alias}' for {settings.registered_model_name}: train and promote one first"
        )
    return load_version(registry, settings.registered_model_name, version), version


def load_version(registry: Registry, model_name: str, version: str):
    """The lightgbm.Booster of one registered version, whatever its aliases."""
    import mlflow

    registry.activate()
    return mlflow.lightgbm.load_model(f"models:/{model_name}/{version}")
