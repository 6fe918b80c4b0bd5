"""The three-layer cascade: training, thresholds, out-of-time evaluation, MLflow logging.

Layer 1 blocks on a critical rule score. Layer 2 (LightGBM, ~50 light features plus the rule
score) scores the rest; only scores inside the ambiguous band go to layer 3 (XGBoost on every
available feature). Review and block thresholds on the final score are chosen on the
validation days; every metric is reported on the later test days, beside the rules-only
baseline.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import polars as pl
import xgboost as xgb

from lakehouse.fraud.config import CASE, FraudSettings
from lakehouse.fraud.features import FEATURE_NAMES, LAYER2_FEATURES
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.fraud.rules import RuleLists

RULE_SCORE = "rule_score"
CASCADE_DIR = "cascade"


@dataclass(frozen=True)
class DaySplit:
    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]

    @classmethod
    def from_days(cls, days: list[str], settings: FraudSettings) -> DaySplit:
        days = sorted(days)[settings.warmup_days :]
        need = settings.test_days + settings.valid_days + 1
        if len(days) < need:
            raise ValueError(f"the out-of-time split needs at least {need + settings.warmup_days} days of history, got {len(days) + settings.warmup_days}")
        test = days[-settings.test_days :]
        valid = days[-settings.test_days - settings.valid_days : -settings.test_days]
        return cls(tuple(days[: -settings.test_days - settings.valid_days]), tuple(valid), tuple(test))

    def frame(self, df: pl.DataFrame, part: str) -> pl.DataFrame:
        return df.filter(pl.col("ts").dt.date().cast(pl.String).is_in(list(getattr(self, part))))


@dataclass(eq=False)  # hashed by identity: the service caches per loaded cascade
class Cascade:
    """Everything the service needs to decide (saved as the `cascade/` artifact of a run)."""

    layer2: lgb.Booster
    layer3: xgb.Booster
    layer2_features: tuple[str, ...]  # in model input order; the last is the rule score
    layer3_features: tuple[str, ...]
    band: tuple[float, float]
    review_threshold: float
    block_threshold: float
    rule_block_threshold: float
    degraded_defaults: dict[str, float]  # feature values used when the store is unavailable

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.layer2.save_model(str(directory / "layer2.txt"))
        self.layer3.save_model(str(directory / "layer3.json"))
        meta = {k: v for k, v in vars(self).items() if k not in ("layer2", "layer3")}
        (directory / "cascade.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Cascade:
        meta = json.loads((directory / "cascade.json").read_text())
        layer2 = lgb.Booster(model_file=str(directory / "layer2.txt"))
        layer3 = xgb.Booster()
        layer3.load_model(str(directory / "layer3.json"))
        layer3.set_param({"nthread": 1})  # single-row predict: no thread-pool spikes
        return cls(
            layer2, layer3, tuple(meta["layer2_features"]), tuple(meta["layer3_features"]), tuple(meta["band"]),
            meta["review_threshold"], meta["block_threshold"], meta["rule_block_threshold"], meta["degraded_defaults"],
        )

    def score_frame(self, df: pl.DataFrame) -> pl.DataFrame:
        """Batch cascade: layer reached, layer-2 score and final score of every row (needs rule_score)."""
        x2 = df.select(self.layer2_features).to_numpy()
        s2 = self.layer2.predict(x2)
        blocked = df[RULE_SCORE].to_numpy() >= self.rule_block_threshold
        in_band = (~blocked) & (s2 >= self.band[0]) & (s2 <= self.band[1])
        final = s2.copy()
        if in_band.any():
            x3 = df.filter(pl.Series(in_band)).select(self.layer3_features).to_numpy()
            final[in_band] = self.layer3.inplace_predict(x3)
        final[blocked] = 1.0
        layer = np.where(blocked, 1, np.where(in_band, 3, 2))
        return df.select("tx_id").with_columns(layer=pl.Series(layer), layer2_score=pl.Series(s2), score=pl.Series(final))

    def decide(self, scored: pl.DataFrame) -> pl.Series:
        s = pl.col("score")
        return scored.select(
            pl.when(pl.col("layer") == 1).then(pl.lit("block"))
            .when(s >= self.block_threshold).then(pl.lit("block"))
            .when(s >= self.review_threshold).then(pl.lit("review"))
            .otherwise(pl.lit("approve"))
        ).to_series().alias("decision")


def _sample(df: pl.DataFrame, rate: float, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Every fraud and a `rate` share of the rest, weighted back to the full population."""
    rng = np.random.default_rng(seed)
    keep = df["is_fraud"].to_numpy() | (rng.random(df.height) < rate)
    part = df.filter(pl.Series(keep))
    weights = np.where(part["is_fraud"].to_numpy(), 1.0, 1.0 / rate)
    return part, weights


def train(data: pl.DataFrame, split: DaySplit, settings: FraudSettings, seed: int = 0) -> Cascade:
    """data: features + rule_score + is_fraud for every transaction."""
    available = [f for f in FEATURE_NAMES if f in data.columns]
    l2 = tuple([f for f in LAYER2_FEATURES if f in available] + [RULE_SCORE])
    l3 = tuple(available + [RULE_SCORE])
    train_df, weights = _sample(split.frame(data, "train"), settings.negative_sample_rate, seed)
    valid_df = split.frame(data, "valid")
    for name, part in (("training", train_df), ("validation", valid_df)):
        if part.is_empty() or part["is_fraud"].sum() == 0:
            raise ValueError(f"the {name} days have no fraud: not enough history")
    y, yv = train_df["is_fraud"].cast(pl.Int64).to_numpy(), valid_df["is_fraud"].cast(pl.Int64).to_numpy()
    d2 = lgb.Dataset(train_df.select(l2).to_numpy(), y, weight=weights, feature_name=list(l2))
    v2 = lgb.Dataset(valid_df.select(l2).to_numpy(), yv, reference=d2)
    layer2 = lgb.train(
        {**settings.lgbm_params, "seed": seed, "deterministic": True, "metric": "binary_logloss"},
        d2, settings.lgbm_rounds, valid_sets=[v2], callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )
    d3 = xgb.DMatrix(train_df.select(l3).to_numpy(), y, weight=weights, feature_names=list(l3))
    v3 = xgb.DMatrix(valid_df.select(l3).to_numpy(), yv, feature_names=list(l3))
    layer3 = xgb.train(
        {**settings.xgb_params, "seed": seed}, d3, settings.xgb_rounds, evals=[(v3, "valid")],
        early_stopping_rounds=settings.early_stopping_rounds, verbose_eval=False,
    )
    layer3 = layer3[: layer3.best_iteration + 1]
    medians = split.frame(data, "train").select(pl.col(c).median() for c in l3).row(0, named=True)
    cascade = Cascade(layer2, layer3, l2, l3, settings.layer3_band, 0.5, 0.9, settings.rule_block_threshold, {k: float(v) for k, v in medians.items()})
    scored = cascade.score_frame(valid_df).with_columns(is_fraud=valid_df["is_fraud"])
    cascade.review_threshold = lowest_threshold(scored, settings.target_precision)
    cascade.block_threshold = max(cascade.review_threshold, lowest_threshold(scored, settings.block_precision))
    return cascade


def lowest_threshold(scored: pl.DataFrame, precision: float) -> float:
    """The lowest score cut whose flags (plus layer-1 blocks) reach `precision` on these rows;
    the cut with the best F1 when none does."""
    y = scored["is_fraud"].to_numpy()
    s = np.where(scored["layer"].to_numpy() == 1, 2.0, scored["score"].to_numpy())
    order = np.argsort(-s)
    tp = np.cumsum(y[order])
    flagged = np.arange(1, y.size + 1)
    prec = tp / flagged
    f1 = 2 * tp / (flagged + y.sum())
    cuts = s[order]
    ok = np.nonzero((prec >= precision) & (cuts <= 1.0))[0]
    index = ok.max() if ok.size else int(np.argmax(f1))
    return float(min(cuts[index], 1.0))


def evaluate(decisions: pl.DataFrame, days: int) -> dict[str, float]:
    """Flag = review or block. decisions: is_fraud, amount_eur, flagged, layer (opt)."""
    y = decisions["is_fraud"].to_numpy()
    flagged = decisions["flagged"].to_numpy()
    amount = decisions["amount_eur"].to_numpy()
    tp = float((y & flagged).sum())
    out = {
        "recall": tp / max(y.sum(), 1),
        "precision": tp / max(flagged.sum(), 1),
        "flag_rate": float(flagged.mean()),
        "legit_flagged": float((~y & flagged).sum()),
        "fraud_eur_caught_per_month": float(amount[y & flagged].sum()) / days * 30,
        "fraud_eur_per_month": float(amount[y].sum()) / days * 30,
        "transactions": float(y.size),
        "frauds": float(y.sum()),
    }
    out["fp_share"] = 1.0 - out["precision"]
    return out


@dataclass
class Evaluation:
    cascade: dict[str, float]
    baseline: dict[str, float]
    by_pattern: pl.DataFrame
    test_decisions: pl.DataFrame


def evaluate_test(cascade: Cascade, data: pl.DataFrame, split: DaySplit, settings: FraudSettings) -> Evaluation:
    test = split.frame(data, "test")
    scored = cascade.score_frame(test)
    decided = test.select("tx_id", "is_fraud", "amount_eur", RULE_SCORE, *(["fraud_pattern"] if "fraud_pattern" in test.columns else [])).with_columns(
        layer=scored["layer"], score=scored["score"], decision=cascade.decide(scored)
    ).with_columns(flagged=pl.col("decision") != "approve")
    days = len(split.test)
    metrics = evaluate(decided, days)
    l1 = decided.filter(pl.col("layer") == 1)
    metrics.update(
        layer1_block_share=l1.height / decided.height,
        layer1_precision=float(l1["is_fraud"].mean()) if l1.height else 0.0,
        layer3_share=float((decided["layer"] == 3).mean()),
        block_rate=float((decided["decision"] == "block").mean()),
        review_threshold=cascade.review_threshold,
        block_threshold=cascade.block_threshold,
    )
    baseline = evaluate(decided.with_columns(flagged=pl.col(RULE_SCORE) >= settings.rules_only_flag_threshold), days)
    metrics["friction_reduction"] = 1.0 - metrics["legit_flagged"] / baseline["legit_flagged"] if baseline["legit_flagged"] else 0.0
    if "fraud_pattern" in decided.columns:
        by_pattern = (
            decided.filter(pl.col("is_fraud"))
            .group_by("fraud_pattern")
            .agg(frauds=pl.len(), recall=pl.col("flagged").mean(), rules_recall=(pl.col(RULE_SCORE) >= settings.rules_only_flag_threshold).mean())
            .sort("fraud_pattern")
        )
    else:
        by_pattern = pl.DataFrame()
    return Evaluation(metrics, baseline, by_pattern, decided)


def passes_gate(metrics: dict[str, float], settings: FraudSettings) -> bool:
    """Beats the rules-only baseline on recall and precision, and meets the minimums."""
    return bool(
        metrics["recall"] >= settings.gate_min_recall
        and metrics["precision"] >= settings.gate_min_precision
        and metrics["recall"] > metrics["baseline_recall"]
        and metrics["precision"] > metrics["baseline_precision"]
    )


def log_cascade(registry: Registry, cascade: Cascade, evaluation: Evaluation, split: DaySplit, settings: FraudSettings, run_name: str) -> tuple[str, str]:
    """Log params, metrics and the cascade; register layer 2 (with the cascade artifact) as `challenger`."""
    metrics = {**evaluation.cascade, **{f"baseline_{k}": v for k, v in evaluation.baseline.items()}}
    with registry.run(CASE, run_name, tags={"case": CASE}) as run:
        mlflow.log_params(
            {
                "train_days": ",".join(split.train), "valid_days": ",".join(split.valid), "test_days": ",".join(split.test),
                "band": str(cascade.band), "layer2_features": len(cascade.layer2_features), "layer3_features": len(cascade.layer3_features),
                "rule_block_threshold": cascade.rule_block_threshold, "negative_sample_rate": settings.negative_sample_rate,
                **{f"lgbm_{k}": v for k, v in settings.lgbm_params.items()}, **{f"xgb_{k}": v for k, v in settings.xgb_params.items()},
            }
        )
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        if not evaluation.by_pattern.is_empty():
            mlflow.log_table(evaluation.by_pattern.to_pandas(), "recall_by_pattern.json")
        with tempfile.TemporaryDirectory() as tmp:
            cascade.save(Path(tmp) / CASCADE_DIR)
            mlflow.log_artifacts(str(Path(tmp) / CASCADE_DIR), CASCADE_DIR)
        info = mlflow.lightgbm.log_model(cascade.layer2, name="model", registered_model_name=settings.registered_model_name)
    version = str(info.registered_model_version)
    registry.set_alias(settings.registered_model_name, CHALLENGER, version)
    return version, run.info.run_id


def load_cascade(registry: Registry, settings: FraudSettings, alias: str = CHAMPION) -> tuple[Cascade, str]:
    """The cascade behind `models:/<name>@<alias>` and its version."""
    version = registry.alias_version(settings.registered_model_name, alias)
    if version is None:
        raise LookupError(f"no version of {settings.registered_model_name} has alias '{alias}': train and promote one first")
    run_id = registry.client.get_model_version(settings.registered_model_name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = registry.client.download_artifacts(run_id, CASCADE_DIR, tmp)
        return Cascade.load(Path(path)), version


def train_from_transactions(registry: Registry, tx: pl.DataFrame, days: list[str], settings: FraudSettings, promote: bool) -> tuple[str, RuleLists]:
    """Features, lists, cascade and evaluation from raw transactions in one call (benchmarks,
    tests); the assets run the same steps one asset at a time. Returns (version, lists)."""
    from lakehouse.fraud.features import batch_features
    from lakehouse.fraud.rules import batch_rules, build_lists

    split = DaySplit.from_days(days, settings)
    features = batch_features(tx, settings)
    lists = build_lists(split.frame(tx, "train"), settings)
    data = features.join(batch_rules(features, tx, lists, settings), on="tx_id")
    cascade = train(data, split, settings)
    version, _ = log_cascade(registry, cascade, evaluate_test(cascade, data, split, settings), split, settings, run_name="from-transactions")
    if promote:
        registry.set_alias(settings.registered_model_name, CHAMPION, version)
    return version, lists
