"""The three-layer cascade: training, calibration, band and thresholds, out-of-time evaluation, MLflow.

Layer 1 blocks on a critical rule score. Layer 2 (LightGBM on the light features plus the rule
score) scores the rest. Layer 3 (XGBoost on every available feature) re-scores the payments whose
layer-2 score is at least a cut chosen on the validation window, and always every payment layer 2
alone would flag. Each layer's score is calibrated on the validation window (Platt scaling on its
log-odds, monotone, so each layer keeps its ranking), so the final score is one probability of
fraud whichever layer decided, and the two layers' payments rank together. The cut is the one,
among shares of traffic up to the latency budget (`cascade.layer3_max_share`), whose final score
has the best average precision on validation: a wider band where layer 3 pays. Review and block
thresholds on the final score are chosen on the validation window; everything is reported on the
test window, beside the rules-only baseline and each layer alone.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from lakehouse.common import promotion
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry
from lakehouse.common.settings import DateRange
from lakehouse.fraud.features_registry import Registry as FeatureRegistry
from lakehouse.fraud.features_registry import registry_from_spec
from lakehouse.fraud.gate import Clusters, average_precision
from lakehouse.fraud.rules import RuleLists
from lakehouse.fraud.settings import CASE, CascadeSettings, FraudSettings

if TYPE_CHECKING:
    import lightgbm
    import xgboost

RULE_SCORE = "rule_score"
CASCADE_DIR = "cascade"
PARTS = ("train", "validation", "test")
_EPS = 1e-15  # scores are clipped to [eps, 1 - eps] before their log-odds


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

    @property
    def trained_until(self) -> date:
        """The last day whose labels the model learnt from (training, then validation for the calibration,
        the band and the thresholds)."""
        return max(self.train.end, self.validation.end)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of P(fraud) = sigmoid(a * logit(raw) + b) fitted on labelled rows; a stays positive, so the
    calibrated score ranks the rows as the raw one does (a = 0 when the score carries no signal)."""
    from sklearn.linear_model import LogisticRegression

    z = logit(raw).reshape(-1, 1)
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(z, y.astype(int))
    a, b = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    if a <= 0:
        rate = min(max(float(y.mean()), _EPS), 1 - _EPS)
        return 0.0, math.log(rate / (1 - rate))
    return a, b


def calibrated(raw: np.ndarray, coefficients: tuple[float, float] | None) -> np.ndarray:
    if coefficients is None:
        return np.asarray(raw, dtype=np.float64)
    a, b = coefficients
    return 1.0 / (1.0 + np.exp(-(a * logit(raw) + b)))


@dataclass(eq=False)
class CalibratedLightGBM:
    """Layer 2: a LightGBM booster whose `predict` returns calibrated probabilities (Platt coefficients
    (a, b) fitted on the validation window; none while training). The service and the batch call it alike."""

    booster: lightgbm.Booster
    coefficients: tuple[float, float] | None = None

    def predict(self, x: np.ndarray, **kwargs) -> np.ndarray:
        return calibrated(self.booster.predict(x, **kwargs), self.coefficients)


@dataclass(eq=False)
class CalibratedXGBoost:
    """Layer 3: an XGBoost booster whose `inplace_predict` returns calibrated probabilities."""

    booster: xgboost.Booster
    coefficients: tuple[float, float] | None = None

    def inplace_predict(self, x: np.ndarray) -> np.ndarray:
        return calibrated(self.booster.inplace_predict(x), self.coefficients)


@dataclass(eq=False)  # hashed by identity: the service caches per loaded cascade
class Cascade:
    """Everything the service needs to decide (saved as the `cascade/` artifact of a run). Every score
    (each layer's, the band, the thresholds) is a calibrated probability of fraud."""

    layer2: CalibratedLightGBM
    layer3: CalibratedXGBoost
    layer2_features: tuple[str, ...]  # in model input order; the last is the rule score
    layer3_features: tuple[str, ...]
    band: tuple[float, float]  # of the layer-2 score
    review_threshold: float  # on the final score
    block_threshold: float
    rule_block_threshold: float
    degraded_defaults: dict[str, float]  # feature values used when the store is unavailable
    registry_spec: dict[str, Any]  # the feature settings the model was trained with
    layer2_thresholds: tuple[float, float] = (0.5, 0.9)  # review and block of layer 2 alone (the lift's reference)
    rule_lists: list[list[str]] = field(default_factory=list)  # the layer-1 lists it was trained with (rows)
    band_search: dict[str, Any] = field(default_factory=dict)  # the validation figures the band was chosen on

    @cached_property  # read on every decision
    def registry(self) -> FeatureRegistry:
        return registry_from_spec(self.registry_spec)

    @cached_property
    def lists(self) -> RuleLists:
        frame = pl.DataFrame(self.rule_lists, schema=["kind", "name", "value"], orient="row")
        return RuleLists.from_frame(frame)

    @property
    def calibration(self) -> dict[str, tuple[float, float] | None]:
        return {"layer2": self.layer2.coefficients, "layer3": self.layer3.coefficients}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.layer2.booster.save_model(str(directory / "layer2.txt"))
        self.layer3.booster.save_model(str(directory / "layer3.json"))
        meta = {k: v for k, v in vars(self).items() if k not in ("layer2", "layer3", "registry", "lists")}
        meta["calibration"] = self.calibration
        (directory / "cascade.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Cascade:
        import lightgbm as lgb
        import xgboost as xgb

        meta = json.loads((directory / "cascade.json").read_text())
        coefficients = {k: tuple(v) if v else None for k, v in meta.pop("calibration", {}).items()}
        layer2 = lgb.Booster(model_file=str(directory / "layer2.txt"))
        layer3 = xgb.Booster()
        layer3.load_model(str(directory / "layer3.json"))
        layer3.set_param({"nthread": 1})  # single-row predict: no thread-pool spikes
        for key in ("layer2_features", "layer3_features", "band", "layer2_thresholds"):
            meta[key] = tuple(meta[key])
        return cls(
            CalibratedLightGBM(layer2, coefficients.get("layer2")),
            CalibratedXGBoost(layer3, coefficients.get("layer3")),
            **meta,
        )

    def layer_scores(self, df: pl.DataFrame, layer3_everywhere: bool = False) -> dict[str, np.ndarray]:
        """Layer reached, layer-2 score, layer-3 score (NaN outside the band unless `layer3_everywhere`) and
        the final score of every row (needs rule_score)."""
        s2 = self.layer2.predict(df.select(self.layer2_features).to_numpy())
        blocked = df[RULE_SCORE].to_numpy() >= self.rule_block_threshold
        in_band = (~blocked) & (s2 >= self.band[0]) & (s2 <= self.band[1])
        s3 = np.full(df.height, np.nan)
        rows = np.ones(df.height, dtype=bool) if layer3_everywhere else in_band
        if rows.any():
            s3[rows] = self.layer3.inplace_predict(df.filter(pl.Series(rows)).select(self.layer3_features).to_numpy())
        final = np.where(in_band, s3, s2)
        final[blocked] = 1.0
        layer = np.where(blocked, 1, np.where(in_band, 3, 2))
        return {"layer": layer, "layer2": s2, "layer3": s3, "score": final}

    def score_frame(self, df: pl.DataFrame) -> pl.DataFrame:
        """Batch cascade: layer reached, layer-2 and layer-3 scores, final score of every row."""
        scores = self.layer_scores(df)
        return df.select("tx_id").with_columns(
            layer=pl.Series(scores["layer"], dtype=pl.Int8),
            layer2_score=pl.Series(scores["layer2"]),
            layer3_score=pl.Series(scores["layer3"]).fill_nan(None),
            score=pl.Series(scores["score"]),
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


SAMPLE_WEIGHT = "sample_weight"  # rows already down-sampled upstream (e.g. day by day at volume) carry 1 / rate


def sample_rows(df: pl.DataFrame, max_legit: int, seed: int) -> pl.DataFrame:
    """Every fraud and about `max_legit` of the rest at most, drawn at random; `sample_weight` weighs each kept
    row back to the population it stands for (1 for a fraud, 1 / sampling rate for the others).

    Rows that already carry a weight (sampled upstream) are kept in proportion to it, so the other kept rows
    end with one weight whatever their origin (the population's payments over the kept ones), rather than a
    few rows from a thinly sampled day weighing hundreds of times more than their neighbours."""
    fraud = df["is_fraud"].to_numpy()
    weight = df[SAMPLE_WEIGHT].to_numpy() if SAMPLE_WEIGHT in df.columns else np.ones(df.height)
    represented = float(weight[~fraud].sum())
    rate = np.minimum(1.0, weight * (max_legit / represented)) if represented else np.ones(df.height)
    keep = fraud | (np.random.default_rng(seed).random(df.height) < rate)
    return df.with_columns(**{SAMPLE_WEIGHT: pl.Series(np.where(fraud, weight, weight / rate))}).filter(pl.Series(keep))


def _sample(df: pl.DataFrame, max_legit: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    part = sample_rows(df, max_legit, seed)
    return part, part[SAMPLE_WEIGHT].to_numpy()


def train(
    data: pl.DataFrame, split: Split, registry: FeatureRegistry, settings: FraudSettings, lists: RuleLists | None = None
) -> Cascade:
    """data: features + rule_score + is_fraud + day for every transaction; `lists`: the rules that scored it."""
    c = settings.cascade
    available = [f for f in registry.names if f in data.columns]
    l2 = tuple([f for f in registry.layer2 if f in available] + [RULE_SCORE])
    l3 = tuple(available + [RULE_SCORE])
    train_df, weights = _sample(split.frame(data, "train"), c.max_legit_training_rows, c.seed)
    valid_df = split.frame(data, "validation")
    for name, part, window in (("training", train_df, split.train), ("validation", valid_df, split.validation)):
        if part.is_empty() or part["is_fraud"].sum() == 0:
            raise ValueError(
                f"the {name} window ({window.start}..{window.end}) has no fraud: move `windows` in the settings "
                f"({FraudSettings.where('windows')})"
            )
    layer2, layer3 = _fit_layers(train_df, weights, valid_df, l2, l3, c)
    medians = split.frame(data, "train").select(pl.col(n).median() for n in l3).row(0, named=True)
    cascade = Cascade(
        CalibratedLightGBM(layer2),
        CalibratedXGBoost(layer3),
        l2,
        l3,
        (2.0, 2.0),  # no band until it is chosen
        0.5,
        0.9,
        settings.rules.block_threshold,
        {k: float(v or 0.0) for k, v in medians.items()},
        registry.spec(),
        rule_lists=[list(r) for r in (lists or RuleLists()).as_frame().iter_rows()],
    )
    raw = cascade.layer_scores(valid_df, layer3_everywhere=True)  # not calibrated yet
    y = valid_df["is_fraud"].to_numpy()
    open_rows = raw["layer"] != 1
    cascade.layer2.coefficients = platt(raw["layer2"][open_rows], y[open_rows])
    cascade.layer3.coefficients = platt(raw["layer3"][open_rows], y[open_rows])
    scores = {
        **raw,
        "layer2": calibrated(raw["layer2"], cascade.layer2.coefficients),
        "layer3": calibrated(raw["layer3"], cascade.layer3.coefficients),
    }
    alone = pl.DataFrame({"layer": scores["layer"], "score": scores["layer2"], "is_fraud": y})
    cascade.layer2_thresholds = thresholds(alone, c)
    customers = valid_df["customer_id"].to_numpy() if "customer_id" in valid_df.columns else np.arange(y.size)
    cascade.band, cascade.band_search = choose_band(scores, y, customers, cascade.layer2_thresholds[0], settings)
    scored = cascade.score_frame(valid_df).with_columns(is_fraud=valid_df["is_fraud"])
    cascade.review_threshold, cascade.block_threshold = thresholds(scored, c)
    if c.refit_with_validation:
        rounds = (layer2.best_iteration or layer2.current_iteration(), layer3.num_boosted_rounds())
        both, weights = _sample(pl.concat([split.frame(data, "train"), valid_df]), c.max_legit_training_rows, c.seed)
        cascade.layer2.booster, cascade.layer3.booster = _fit_layers(both, weights, None, l2, l3, c, rounds)
    return cascade


def _fit_layers(
    train_df: pl.DataFrame,
    weights: np.ndarray,
    valid_df: pl.DataFrame | None,
    l2: tuple[str, ...],
    l3: tuple[str, ...],
    c: CascadeSettings,
    rounds: tuple[int, int] | None = None,
) -> tuple[lightgbm.Booster, xgboost.Booster]:
    """Both layers on the (sampled, weighted) training rows: early-stopped on the validation rows, or with
    the given numbers of rounds."""
    import lightgbm as lgb
    import xgboost as xgb

    y = train_df["is_fraud"].cast(pl.Int64).to_numpy()
    d2 = lgb.Dataset(train_df.select(l2).to_numpy(), y, weight=weights, feature_name=list(l2))
    d3 = xgb.DMatrix(train_df.select(l3).to_numpy(), y, weight=weights, feature_names=list(l3))
    params2 = {**c.lgbm_params, "seed": c.seed, "deterministic": True, "metric": "binary_logloss"}
    params3 = {**c.xgb_params, "seed": c.seed}
    if rounds is not None:
        return lgb.train(params2, d2, rounds[0]), xgb.train(params3, d3, rounds[1], verbose_eval=False)
    yv = valid_df["is_fraud"].cast(pl.Int64).to_numpy()
    v2 = lgb.Dataset(valid_df.select(l2).to_numpy(), yv, reference=d2)
    layer2 = lgb.train(
        params2,
        d2,
        c.lgbm_rounds,
        valid_sets=[v2],
        callbacks=[lgb.early_stopping(c.early_stopping_rounds, verbose=False)],
    )
    v3 = xgb.DMatrix(valid_df.select(l3).to_numpy(), yv, feature_names=list(l3))
    layer3 = xgb.train(
        params3,
        d3,
        c.xgb_rounds,
        evals=[(v3, "valid")],
        early_stopping_rounds=c.early_stopping_rounds,
        verbose_eval=False,
    )
    return layer2, layer3[: layer3.best_iteration + 1]


def thresholds(scored: pl.DataFrame, cascade: CascadeSettings) -> tuple[float, float]:
    """Review and block thresholds (see `choose_threshold`)."""
    review = choose_threshold(scored, cascade.target_precision, cascade.threshold_beta)
    return review, max(review, choose_threshold(scored, cascade.block_precision, cascade.threshold_beta))


def band_candidates(settings: CascadeSettings) -> list[float]:
    """The shares of traffic the band search tries: step, 2 x step, ... up to the latency budget."""
    steps = int(math.floor(settings.layer3_max_share / settings.layer3_share_step + 1e-9))
    shares = [round(settings.layer3_share_step * k, 6) for k in range(1, steps + 1)]
    return sorted(set(shares) | {settings.layer3_max_share})


def choose_band(
    scores: dict[str, np.ndarray],
    y: np.ndarray,
    customers: np.ndarray,
    layer2_review: float,
    settings: FraudSettings,
) -> tuple[tuple[float, float], dict[str, Any]]:
    """The layer-3 band on the validation rows (`scores`: Cascade.layer_scores with layer 3 everywhere).

    Each candidate share of the traffic layer 1 leaves open (up to the latency budget) cuts the layer-2
    score at that quantile (or lower, to include every payment layer 2 alone would flag), and its gain is the
    average precision of the final score. The widest candidate not worse than the best beyond noise wins
    (bootstrap over customers, `gate.comparison`): layer 3, which sees every feature, takes the traffic the
    budget allows unless the validation shows that it costs ranking quality. Returns the band and what the
    choice rests on."""
    open_rows = scores["layer"] != 1
    s2, s3 = scores["layer2"], scores["layer3"]
    if not open_rows.any() or not y.any():
        return (0.0, 1.0), {}
    clusters = Clusters(customers)
    # The choice needs the side of each interval, not its last digit: fewer resamples than the gate's.
    comparison = settings.gate.comparison.model_copy(update={"resamples": min(settings.gate.comparison.resamples, 200)})
    candidates = []
    for share in band_candidates(settings.cascade):
        low = min(float(np.quantile(s2[open_rows], 1.0 - share)), layer2_review)
        in_band = open_rows & (s2 >= low)
        final = np.where(in_band, s3, np.where(open_rows, s2, 1.0))
        candidates.append(
            {
                "share": share,
                "low": low,
                "traffic_share": float(in_band.mean()),
                "average_precision": ranking_metrics(y, final)["average_precision"],
                "frauds_below": int((y & open_rows & ~in_band).sum()),
                "final": final,
            }
        )
    best = max(candidates, key=lambda c: (round(c["average_precision"], 9), -c["share"]))
    chosen = best
    for wider in sorted((c for c in candidates if c["share"] > best["share"]), key=lambda c: -c["share"]):
        versus_best = promotion.compare(
            "the best band",
            "average precision",
            challenger=average_precision(y, wider["final"], clusters),
            other=average_precision(y, best["final"], clusters),
            units=clusters.count,
            support=int(y.sum()),
            support_unit="frauds",
            settings=comparison,
        )
        if not versus_best.worse:
            chosen = wider
            break
    search = {
        "chosen_share": chosen["share"],
        "best_share": best["share"],
        "validation_traffic_share": chosen["traffic_share"],
        "validation_average_precision": chosen["average_precision"],
        "validation_frauds": int(y[open_rows].sum()),
        "validation_frauds_below_band": chosen["frauds_below"],
        "candidates": [{k: v for k, v in c.items() if k != "final"} for c in candidates],
    }
    return (chosen["low"], 1.0), search


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


def card_precision_at_k(scored: pl.DataFrame, k: int) -> float:
    """Per day, the share of the k cards with the highest score (each card's riskiest payment) that had a
    fraud that day (of all the day's cards when fewer), averaged over the days."""
    if scored.is_empty() or "card_id" not in scored.columns:
        return float("nan")
    per_day = (
        scored.group_by("day", "card_id")
        .agg(score=pl.col("score").max(), fraud=pl.col("is_fraud").any())
        .sort("day", "score", "card_id", descending=[False, True, False])
        .group_by("day")
        .agg(pl.col("fraud").head(k).mean())
    )
    return float(per_day["fraud"].mean())


def _layer_figures(decided: pl.DataFrame, cascade: Cascade, days: int, metrics: dict) -> dict[str, float]:
    """Layer shares, and each layer alone beside the cascade (layer 2 with its own validation thresholds,
    layer 3 on every row when the rows carry `layer3_alone`)."""
    y = decided["is_fraud"].to_numpy()
    layer = decided["layer"].to_numpy()
    alone_score = np.where(layer == 1, 1.0, decided["layer2_score"].to_numpy())
    alone = decided.with_columns(score2=pl.Series(alone_score))
    alone = alone.with_columns(flagged=decisions(alone, *cascade.layer2_thresholds, score="score2") != "approve")
    alone_ranking = ranking_metrics(y, alone_score)
    alone_flags = flag_metrics(alone, days)
    l1 = layer == 1
    figures = {
        "layer1_block_share": float(l1.mean()) if l1.size else 0.0,
        "layer1_precision": float(y[l1].mean()) if l1.any() else 0.0,
        "layer3_share": float((layer == 3).mean()) if layer.size else 0.0,
        "layer3_fraud_share": float(y[layer == 3].sum() / max(y.sum(), 1)),
        "frauds_below_band": float((y & (layer == 2)).sum()),
        "layer2_only_roc_auc": alone_ranking["roc_auc"],
        "layer2_only_average_precision": alone_ranking["average_precision"],
        "layer2_only_recall": alone_flags["recall"],
        "layer2_only_precision": alone_flags["precision"],
        "layer3_lift_average_precision": metrics["average_precision"] - alone_ranking["average_precision"],
        "layer3_lift_recall": metrics["recall"] - alone_flags["recall"],
        "layer3_lift_precision": metrics["precision"] - alone_flags["precision"],
    }
    if "layer3_alone" in decided.columns:
        everywhere = np.where(layer == 1, 1.0, decided["layer3_alone"].to_numpy())
        third = ranking_metrics(y, everywhere)
        figures.update(layer3_only_roc_auc=third["roc_auc"], layer3_only_average_precision=third["average_precision"])
    return figures


def evaluate(scored: pl.DataFrame, cascade: Cascade, days: int, settings: FraudSettings) -> Evaluation:
    """scored: tx_id, day, is_fraud, amount, rule_score, layer, layer2_score, score (+ card_id, fraud_pattern,
    layer3_alone)."""
    review, block = cascade.review_threshold, cascade.block_threshold
    decided = scored.with_columns(decision=decisions(scored, review, block)).with_columns(
        flagged=pl.col("decision") != "approve"
    )
    metrics = flag_metrics(decided, days)
    metrics.update(ranking_metrics(decided["is_fraud"].to_numpy(), decided["score"].to_numpy()))
    metrics.update(
        _layer_figures(decided, cascade, days, metrics),
        card_precision_at_k=card_precision_at_k(decided, settings.evaluation.card_precision_k),
        block_rate=float((decided["decision"] == "block").mean()) if decided.height else 0.0,
        review_threshold=review,
        block_threshold=block,
    )
    rules_flag = pl.col(RULE_SCORE) >= settings.rules.baseline_flag_threshold
    baseline = flag_metrics(decided.with_columns(flagged=rules_flag), days)
    baseline["card_precision_at_k"] = card_precision_at_k(
        decided.with_columns(score=pl.col(RULE_SCORE)), settings.evaluation.card_precision_k
    )
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


SCORED_EXTRAS = ("ts", "customer_id", "card_id", "merchant_id", "fraud_pattern")


def score_rows(cascade: Cascade, data: pl.DataFrame, layer3_everywhere: bool = False) -> pl.DataFrame:
    """data (features + rule_score + is_fraud + amount) with layer, raw layer scores and the final score;
    `layer3_everywhere` adds layer 3's raw score of every row (`layer3_alone`, for its figures alone)."""
    scores = cascade.layer_scores(data, layer3_everywhere)
    extra = [c for c in SCORED_EXTRAS if c in data.columns]
    in_band = scores["layer"] == 3
    scored = data.select("tx_id", "day", *extra, "is_fraud", "amount", RULE_SCORE).with_columns(
        layer=pl.Series(scores["layer"], dtype=pl.Int8),
        layer2_score=pl.Series(scores["layer2"]),
        layer3_score=pl.Series(np.where(in_band, scores["layer3"], np.nan)).fill_nan(None),
        score=pl.Series(scores["score"]),
    )
    return scored.with_columns(layer3_alone=pl.Series(scores["layer3"])) if layer3_everywhere else scored


def evaluate_window(
    cascade: Cascade, data: pl.DataFrame, window: DateRange, settings: FraudSettings, layer3_everywhere: bool = False
) -> Evaluation:
    rows = data.filter(pl.col("day").is_between(window.start, window.end))
    if rows.is_empty():
        raise ValueError(f"no payment in {window.start}..{window.end}")
    return evaluate(score_rows(cascade, rows, layer3_everywhere), cascade, window.days, settings)


def log_cascade(
    registry: Registry, cascade: Cascade, evaluation: Evaluation, split: Split, settings: FraudSettings, run_name: str
) -> tuple[str, str]:
    """Log params, metrics and the cascade; register layer 2 (with the cascade artifact) as `challenger`,
    tagged with what it learnt from (`trained_until`, the windows)."""
    import mlflow
    import mlflow.lightgbm

    c = settings.cascade
    search = cascade.band_search
    with registry.run(CASE, run_name, tags={"case": CASE}) as run:
        mlflow.log_params(
            {
                **{f"{p}_window": f"{getattr(split, p).start}..{getattr(split, p).end}" for p in PARTS},
                "band": str(tuple(round(b, 6) for b in cascade.band)),
                "layer3_max_share": c.layer3_max_share,
                "layer3_chosen_share": search.get("chosen_share"),
                "calibration": json.dumps(cascade.calibration),
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
        validation = {k: v for k, v in search.items() if k.startswith("validation_")}
        figures = {**evaluation.metrics(), **validation}
        mlflow.log_metrics({k: float(v) for k, v in figures.items() if isinstance(v, int | float) and v == v})
        if not evaluation.by_pattern.is_empty():
            mlflow.log_table(evaluation.by_pattern.to_pandas(), "recall_by_pattern.json")
        if search.get("candidates"):
            mlflow.log_table(pl.DataFrame(search["candidates"]).to_pandas(), "band_search.json")
        with tempfile.TemporaryDirectory() as tmp:
            cascade.save(Path(tmp) / CASCADE_DIR)
            mlflow.log_artifacts(str(Path(tmp) / CASCADE_DIR), CASCADE_DIR)
        info = mlflow.lightgbm.log_model(
            cascade.layer2.booster, name="model", registered_model_name=c.registered_model_name
        )
    version = str(info.registered_model_version)
    registry.set_alias(c.registered_model_name, CHALLENGER, version)
    promotion.tag_training(
        registry, c.registered_model_name, version, split.trained_until.isoformat(), split.describe()
    )
    return version, run.info.run_id


def load_cascade(
    registry: Registry, settings: FraudSettings, alias: str = CHAMPION, version: str | None = None
) -> tuple[Cascade, str]:
    """The cascade behind `models:/<name>@<alias>` (or the given version) and its version."""
    name = settings.cascade.registered_model_name
    version = version or registry.alias_version(name, alias)
    if version is None:
        raise LookupError(f"no version of {name} has alias '{alias}': train and promote one first")
    run_id = registry.client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = registry.client.download_artifacts(run_id, CASCADE_DIR, tmp)
        return Cascade.load(Path(path)), version
