"""The three-layer cascade: training, band and thresholds, out-of-time evaluation, MLflow.

Layer 1 blocks on a critical rule score. Layer 2 (LightGBM on the light features plus the rule
score) scores the rest. Layer 3 (XGBoost on every available feature) re-scores the ambiguous
zone: layer-2 scores from the (1 - share) quantile of the validation days upwards, and always
every payment that layer 2 alone would flag, so layer 3 sees the configured share of traffic
and the decision threshold whatever the score scale. Review and block thresholds on the final
score are chosen on the validation days; everything is reported on the test window, beside
the rules-only baseline and layer 2 alone (the lift layer 3 adds).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from lakehouse.common.promotion import Floor, Verdict
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.common.settings import DateRange
from lakehouse.fraud.features_registry import Registry as FeatureRegistry
from lakehouse.fraud.features_registry import registry_from_spec
from lakehouse.fraud.settings import CASE, CascadeSettings, FraudSettings

if TYPE_CHECKING:
    import lightgbm
    import xgboost

RULE_SCORE = "rule_score"
CASCADE_DIR = "cascade"
PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Train / validation / test windows of the data (from the settings' evaluation windows)."""

    train: DateRange
    validation: DateRange
    test: DateRange

    @classmethod
    def from_days(cls, first: date, last: date, settings: FraudSettings) -> Split:
        return cls(**settings.windows.resolve(first, last))

    def frame(self, df: pl.DataFrame, part: str) -> pl.DataFrame:
        window: DateRange = getattr(self, part)
        return df.filter(pl.col("day").is_between(window.start, window.end))

    def describe(self) -> str:
        return ", ".join(f"{p} {getattr(self, p).start}..{getattr(self, p).end}" for p in PARTS)


@dataclass(eq=False)  # hashed by identity: the service caches per loaded cascade
class Cascade:
    """Everything the service needs to decide (saved as the `cascade/` artifact of a run)."""

    layer2: lightgbm.Booster
    layer3: xgboost.Booster
    layer2_features: tuple[str, ...]  # in model input order; the last is the rule score
    layer3_features: tuple[str, ...]
    band: tuple[float, float]
    review_threshold: float
    block_threshold: float
    rule_block_threshold: float
    degraded_defaults: dict[str, float]  # feature values used when the store is unavailable
    registry_spec: dict[str, Any]  # the feature settings the model was trained with
    layer2_thresholds: tuple[float, float] = (0.5, 0.9)  # review and block of layer 2 alone (the lift's reference)

    @cached_property  # read on every decision
    def registry(self) -> FeatureRegistry:
        return registry_from_spec(self.registry_spec)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.layer2.save_model(str(directory / "layer2.txt"))
        self.layer3.save_model(str(directory / "layer3.json"))
        meta = {k: v for k, v in vars(self).items() if k not in ("layer2", "layer3", "registry")}
        (directory / "cascade.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Cascade:
        import lightgbm as lgb
        import xgboost as xgb

        meta = json.loads((directory / "cascade.json").read_text())
        layer2 = lgb.Booster(model_file=str(directory / "layer2.txt"))
        layer3 = xgb.Booster()
        layer3.load_model(str(directory / "layer3.json"))
        layer3.set_param({"nthread": 1})  # single-row predict: no thread-pool spikes
        for key in ("layer2_features", "layer3_features", "band", "layer2_thresholds"):
            meta[key] = tuple(meta[key])
        return cls(layer2, layer3, **meta)

    def score_frame(self, df: pl.DataFrame) -> pl.DataFrame:
        """Batch cascade: layer reached, layer-2 score and final score of every row (needs rule_score)."""
        s2 = self.layer2.predict(df.select(self.layer2_features).to_numpy())
        blocked = df[RULE_SCORE].to_numpy() >= self.rule_block_threshold
        in_band = (~blocked) & (s2 >= self.band[0]) & (s2 <= self.band[1])
        final = s2.copy()
        if in_band.any():
            final[in_band] = self.layer3.inplace_predict(
                df.filter(pl.Series(in_band)).select(self.layer3_features).to_numpy()
            )
        final[blocked] = 1.0
        layer = np.where(blocked, 1, np.where(in_band, 3, 2))
        return df.select("tx_id").with_columns(
            layer=pl.Series(layer, dtype=pl.Int8), layer2_score=pl.Series(s2), score=pl.Series(final)
        )

    def decide(self, scored: pl.DataFrame) -> pl.Series:
        return decisions(scored, self.review_threshold, self.block_threshold)


def decisions(scored: pl.DataFrame, review: float, block: float, score: str = "score") -> pl.Series:
    s = pl.col(score)
    return (
        scored.select(
            pl.when(pl.col("layer") == 1)
            .then(pl.lit("block"))
            .when(s >= block)
            .then(pl.lit("block"))
            .when(s >= review)
            .then(pl.lit("review"))
            .otherwise(pl.lit("approve"))
        )
        .to_series()
        .alias("decision")
    )


def _sample(df: pl.DataFrame, max_legit: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Every fraud and at most `max_legit` of the rest, weighted back to the full population."""
    fraud = df["is_fraud"].to_numpy()
    legit = int((~fraud).sum())
    rate = min(1.0, max_legit / legit) if legit else 1.0
    keep = fraud | (np.random.default_rng(seed).random(df.height) < rate)
    part = df.filter(pl.Series(keep))
    return part, np.where(part["is_fraud"].to_numpy(), 1.0, 1.0 / rate)


def train(data: pl.DataFrame, split: Split, registry: FeatureRegistry, settings: FraudSettings) -> Cascade:
    """data: features + rule_score + is_fraud + day for every transaction."""
    import lightgbm as lgb
    import xgboost as xgb

    c = settings.cascade
    available = [f for f in registry.names if f in data.columns]
    l2 = tuple([f for f in registry.layer2 if f in available] + [RULE_SCORE])
    l3 = tuple(available + [RULE_SCORE])
    train_df, weights = _sample(split.frame(data, "train"), c.max_legit_training_rows, c.seed)
    valid_df = split.frame(data, "validation")
    for name, part in (("training", train_df), ("validation", valid_df)):
        if part.is_empty() or part["is_fraud"].sum() == 0:
            raise ValueError(
                f"the {name} window ({getattr(split, 'train' if name == 'training' else 'validation')}) has no fraud: move `windows` in the settings ({FraudSettings.where('windows')})"
            )
    y, yv = train_df["is_fraud"].cast(pl.Int64).to_numpy(), valid_df["is_fraud"].cast(pl.Int64).to_numpy()
    d2 = lgb.Dataset(train_df.select(l2).to_numpy(), y, weight=weights, feature_name=list(l2))
    v2 = lgb.Dataset(valid_df.select(l2).to_numpy(), yv, reference=d2)
    layer2 = lgb.train(
        {**c.lgbm_params, "seed": c.seed, "deterministic": True, "metric": "binary_logloss"},
        d2,
        c.lgbm_rounds,
        valid_sets=[v2],
        callbacks=[lgb.early_stopping(c.early_stopping_rounds, verbose=False)],
    )
    d3 = xgb.DMatrix(train_df.select(l3).to_numpy(), y, weight=weights, feature_names=list(l3))
    v3 = xgb.DMatrix(valid_df.select(l3).to_numpy(), yv, feature_names=list(l3))
    layer3 = xgb.train(
        {**c.xgb_params, "seed": c.seed},
        d3,
        c.xgb_rounds,
        evals=[(v3, "valid")],
        early_stopping_rounds=c.early_stopping_rounds,
        verbose_eval=False,
    )
    layer3 = layer3[: layer3.best_iteration + 1]
    medians = split.frame(data, "train").select(pl.col(n).median() for n in l3).row(0, named=True)
    no_band = (2.0, 2.0)
    cascade = Cascade(
        layer2,
        layer3,
        l2,
        l3,
        no_band,
        0.5,
        0.9,
        settings.rules.block_threshold,
        {k: float(v or 0.0) for k, v in medians.items()},
        registry.spec(),
    )
    alone = cascade.score_frame(valid_df).with_columns(is_fraud=valid_df["is_fraud"])  # layer 2 alone (no band yet)
    cascade.layer2_thresholds = thresholds(alone, c)
    cascade.band = layer3_band(alone, cascade.layer2_thresholds[0], c.layer3_share)
    scored = cascade.score_frame(valid_df).with_columns(is_fraud=valid_df["is_fraud"])
    cascade.review_threshold, cascade.block_threshold = thresholds(scored, c)
    return cascade


def thresholds(scored: pl.DataFrame, cascade: CascadeSettings) -> tuple[float, float]:
    """Review and block thresholds (see `choose_threshold`)."""
    review = choose_threshold(scored, cascade.target_precision, cascade.threshold_beta)
    return review, max(review, choose_threshold(scored, cascade.block_precision, cascade.threshold_beta))


def layer3_band(alone: pl.DataFrame, layer2_review: float, share: float) -> tuple[float, float]:
    """The layer-2 scores layer 3 re-scores: from the (1 - share) quantile of the validation
    payments layer 1 did not block, or lower to include every payment layer 2 would flag alone."""
    open_rows = alone.filter(pl.col("layer") != 1)
    if open_rows.is_empty():
        return (0.0, 1.0)
    quantile = float(np.quantile(open_rows["layer2_score"].to_numpy(), 1.0 - share))
    return (min(quantile, layer2_review), 1.0)


def choose_threshold(scored: pl.DataFrame, precision: float, beta: float) -> float:
    """The score cut with the best F-beta among those whose flags (plus layer-1 blocks) reach
    `precision` on these rows; the best F-beta overall when none does."""
    y = scored["is_fraud"].to_numpy()
    s = np.where(scored["layer"].to_numpy() == 1, 2.0, scored["score"].to_numpy())
    order = np.argsort(-s, kind="stable")
    cuts = s[order]
    tp = np.cumsum(y[order])
    flagged = np.arange(1, y.size + 1)
    last_of_cut = np.append(cuts[1:] != cuts[:-1], True)  # a cut flags every row at its score
    b2 = beta * beta
    f_beta = np.where(last_of_cut & (cuts <= 1.0), (1 + b2) * tp / (flagged + b2 * y.sum()), -1.0)
    reaching = np.where(tp / flagged >= precision, f_beta, -1.0)
    index = int(np.argmax(reaching)) if reaching.max() > 0 else int(np.argmax(f_beta))
    return float(min(cuts[index], 1.0))


def flag_metrics(decisions: pl.DataFrame, days: int) -> dict[str, float]:
    """Flag = review or block. decisions: is_fraud, amount, flagged."""
    y = decisions["is_fraud"].to_numpy()
    flagged = decisions["flagged"].to_numpy()
    amount = decisions["amount"].to_numpy()
    tp = float((y & flagged).sum())
    out = {
        "recall": tp / max(y.sum(), 1),
        "precision": tp / max(flagged.sum(), 1),
        "flag_rate": float(flagged.mean()) if flagged.size else 0.0,
        "legit_flagged": float((~y & flagged).sum()),
        "fraud_caught_per_month": float(amount[y & flagged].sum()) / days * 30,
        "fraud_per_month": float(amount[y].sum()) / days * 30,
        "transactions": float(y.size),
        "frauds": float(y.sum()),
    }
    out["fp_share"] = 1.0 - out["precision"]
    return out


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if y.sum() == 0 or y.sum() == y.size:
        return {"roc_auc": float("nan"), "average_precision": float("nan")}
    return {"roc_auc": float(roc_auc_score(y, score)), "average_precision": float(average_precision_score(y, score))}


@dataclass
class Evaluation:
    cascade: dict[str, float]
    baseline: dict[str, float]  # rules only
    by_pattern: pl.DataFrame
    decisions: pl.DataFrame

    def metrics(self) -> dict[str, float]:
        return {**self.cascade, **{f"baseline_{k}": v for k, v in self.baseline.items()}}


def evaluate(scored: pl.DataFrame, cascade: Cascade, days: int, settings: FraudSettings) -> Evaluation:
    """scored: tx_id, is_fraud, amount, rule_score, layer, layer2_score, score (+ fraud_pattern)."""
    review, block = cascade.review_threshold, cascade.block_threshold
    decided = scored.with_columns(decision=decisions(scored, review, block)).with_columns(
        flagged=pl.col("decision") != "approve"
    )
    metrics = flag_metrics(decided, days)
    y = decided["is_fraud"].to_numpy()
    layer = decided["layer"].to_numpy()
    ranking = ranking_metrics(y, decided["score"].to_numpy())
    # Layer 2 alone: the same blocks, the layer-2 score everywhere, its own validation thresholds.
    alone_score = np.where(layer == 1, 1.0, decided["layer2_score"].to_numpy())
    alone = decided.with_columns(score2=pl.Series(alone_score))
    alone = alone.with_columns(flagged=decisions(alone, *cascade.layer2_thresholds, score="score2") != "approve")
    alone_ranking = ranking_metrics(y, alone_score)
    alone_flags = flag_metrics(alone, days)
    l1 = layer == 1
    metrics.update(
        ranking,
        layer1_block_share=float(l1.mean()) if l1.size else 0.0,
        layer1_precision=float(y[l1].mean()) if l1.any() else 0.0,
        layer3_share=float((layer == 3).mean()) if layer.size else 0.0,
        layer3_fraud_share=float(y[layer == 3].sum() / max(y.sum(), 1)),
        block_rate=float((decided["decision"] == "block").mean()) if decided.height else 0.0,
        review_threshold=review,
        block_threshold=block,
        layer2_only_roc_auc=alone_ranking["roc_auc"],
        layer2_only_average_precision=alone_ranking["average_precision"],
        layer2_only_recall=alone_flags["recall"],
        layer2_only_precision=alone_flags["precision"],
        layer3_lift_average_precision=ranking["average_precision"] - alone_ranking["average_precision"],
        layer3_lift_recall=metrics["recall"] - alone_flags["recall"],
        layer3_lift_precision=metrics["precision"] - alone_flags["precision"],
    )
    rules_flag = pl.col(RULE_SCORE) >= settings.rules.baseline_flag_threshold
    baseline = flag_metrics(decided.with_columns(flagged=rules_flag), days)
    metrics["friction_reduction"] = (
        1.0 - metrics["legit_flagged"] / baseline["legit_flagged"] if baseline["legit_flagged"] else 0.0
    )
    metrics["net_gain_per_month"] = (
        metrics["fraud_caught_per_month"]
        - baseline["fraud_caught_per_month"]
        - settings.economics.system_cost_per_month
    )
    by_pattern = pl.DataFrame()
    if "fraud_pattern" in decided.columns:
        by_pattern = (
            decided.filter(pl.col("is_fraud"))
            .group_by("fraud_pattern")
            .agg(frauds=pl.len(), recall=pl.col("flagged").mean(), rules_recall=rules_flag.mean())
            .sort("fraud_pattern")
        )
    return Evaluation(
        {k: float(v) for k, v in metrics.items()}, {k: float(v) for k, v in baseline.items()}, by_pattern, decided
    )


def score_rows(cascade: Cascade, data: pl.DataFrame) -> pl.DataFrame:
    """data (features + rule_score + is_fraud + amount) with layer, layer2_score and score."""
    scored = cascade.score_frame(data)
    extra = [c for c in ("fraud_pattern", "customer_id", "merchant_id") if c in data.columns]
    return data.select("tx_id", "day", "is_fraud", "amount", RULE_SCORE, *extra).with_columns(
        layer=scored["layer"], layer2_score=scored["layer2_score"], score=scored["score"]
    )


def evaluate_window(cascade: Cascade, data: pl.DataFrame, window: DateRange, settings: FraudSettings) -> Evaluation:
    rows = data.filter(pl.col("day").is_between(window.start, window.end))
    if rows.is_empty():
        raise ValueError(f"no payment in {window.start}..{window.end}")
    return evaluate(score_rows(cascade, rows), cascade, window.days, settings)


def gate(metrics: dict[str, float], version: str, champion: str | None, settings: FraudSettings) -> Verdict:
    """The promotion gate: the seed's floors on the test window."""
    g = settings.gate
    return Verdict(
        settings.cascade.registered_model_name,
        version,
        champion,
        floors=(
            Floor("recall", metrics["recall"], g.min_recall),
            Floor("precision", metrics["precision"], g.min_precision),
        ),
        window="the test window",
        headline=f"recall {metrics['recall']:.3f}, precision {metrics['precision']:.3f}",
    )


def log_cascade(
    registry: Registry, cascade: Cascade, evaluation: Evaluation, split: Split, settings: FraudSettings, run_name: str
) -> tuple[str, str]:
    """Log params, metrics and the cascade; register layer 2 (with the cascade artifact) as `challenger`."""
    import mlflow
    import mlflow.lightgbm

    c = settings.cascade
    with registry.run(CASE, run_name, tags={"case": CASE}) as run:
        mlflow.log_params(
            {
                **{f"{p}_window": f"{getattr(split, p).start}..{getattr(split, p).end}" for p in PARTS},
                "band": str(tuple(round(b, 6) for b in cascade.band)),
                "layer3_share_setting": c.layer3_share,
                "layer2_features": len(cascade.layer2_features),
                "layer3_features": len(cascade.layer3_features),
                "rule_block_threshold": cascade.rule_block_threshold,
                "max_legit_training_rows": c.max_legit_training_rows,
                "label_delay_days": settings.features.label_delay_days,
                "currency": settings.economics.currency,
                **{f"lgbm_{k}": v for k, v in c.lgbm_params.items()},
                **{f"xgb_{k}": v for k, v in c.xgb_params.items()},
            }
        )
        mlflow.log_metrics(
            {k: float(v) for k, v in evaluation.metrics().items() if v == v}
        )  # NaN (no fraud) is not logged
        if not evaluation.by_pattern.is_empty():
            mlflow.log_table(evaluation.by_pattern.to_pandas(), "recall_by_pattern.json")
        with tempfile.TemporaryDirectory() as tmp:
            cascade.save(Path(tmp) / CASCADE_DIR)
            mlflow.log_artifacts(str(Path(tmp) / CASCADE_DIR), CASCADE_DIR)
        info = mlflow.lightgbm.log_model(cascade.layer2, name="model", registered_model_name=c.registered_model_name)
    version = str(info.registered_model_version)
    registry.set_alias(c.registered_model_name, CHALLENGER, version)
    return version, run.info.run_id


def load_cascade(registry: Registry, settings: FraudSettings, alias: str = CHAMPION) -> tuple[Cascade, str]:
    """The cascade behind `models:/<name>@<alias>` and its version."""
    name = settings.cascade.registered_model_name
    version = registry.alias_version(name, alias)
    if version is None:
        raise LookupError(f"no version of {name} has alias '{alias}': train and promote one first")
    run_id = registry.client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = registry.client.download_artifacts(run_id, CASCADE_DIR, tmp)
        return Cascade.load(Path(path)), version
