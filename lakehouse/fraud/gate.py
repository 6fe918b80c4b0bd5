"""The fraud promotion gate, through the one promotion path (`lakehouse.common.promotion`).

Floors: the seed's recall and precision on the test window (`gate.min_recall`, `gate.min_precision`).
Comparisons, each on the same rows for both sides, with a bootstrap interval of the paired gain over
customers (frauds come in per-customer bursts, so payments are not independent units):
- against the champion: average precision on the test-window payments after both models' training
  cut-offs (the champion's `trained_until` tag, the challenger's validation end), each model with its
  own rules; where no such payment exists the comparison says why and the floors decide;
- against the rules only: recall (on the frauds) and precision (on the flagged payments), which count
  only with `gate.comparison.min_support` items (a precision from a handful of flags never decides).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from lakehouse.common import promotion
from lakehouse.common.promotion import Comparison, Floor, Verdict
from lakehouse.fraud.settings import FraudSettings

CHAMPION_METRIC = "average precision"


class Clusters:
    """Rows grouped into the units a bootstrap resamples (customers)."""

    def __init__(self, keys: np.ndarray) -> None:
        uniques, self.codes = np.unique(np.asarray(keys).astype(str), return_inverse=True)
        self.count = int(uniques.size)

    def weights(self, index: np.ndarray) -> np.ndarray:
        """How many times each row is drawn when the units `index` (repeats allowed) are."""
        return np.bincount(index, minlength=self.count)[self.codes].astype(np.float64)


def average_precision(y: np.ndarray, score: np.ndarray, clusters: Clusters) -> Callable[[np.ndarray], float]:
    """Average precision of `score` over the rows of the drawn units (sklearn's definition: precision at each
    distinct score times the recall it adds), computed on one presorted order for every resample."""
    order = np.argsort(-score, kind="stable")
    ys, ss = y[order].astype(np.float64), score[order]
    positives = np.flatnonzero(ys)
    # Rows ranked below the last fraud (and its ties) change nothing.
    end = int(np.searchsorted(-ss, -ss[positives[-1]], side="right")) if positives.size else 0
    last_of_score = np.append(ss[1:end] != ss[: end - 1], True) if end else np.zeros(0, dtype=bool)
    ys, codes = ys[:end], clusters.codes[order][:end]

    def statistic(index: np.ndarray) -> float:
        w = np.bincount(index, minlength=clusters.count)[codes].astype(np.float64)
        tp = np.cumsum(w * ys)[last_of_score]
        if not tp.size or tp[-1] <= 0:
            return float("nan")
        flagged = np.cumsum(w)[last_of_score]
        precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
        return float(np.sum(np.diff(tp, prepend=0.0) / tp[-1] * precision))

    return statistic


def share(numerator: np.ndarray, denominator: np.ndarray, clusters: Clusters) -> Callable[[np.ndarray], float]:
    """Rows with `numerator` among rows with `denominator`, over the drawn units (0 when there are none)."""
    numerator, denominator = numerator.astype(np.float64), denominator.astype(np.float64)

    def statistic(index: np.ndarray) -> float:
        w = clusters.weights(index)
        total = float(w @ denominator)
        return float(w @ numerator) / total if total > 0 else 0.0

    return statistic


def _rows(frame: pl.DataFrame, clusters: Clusters, what: str) -> str:
    days = f"{frame['day'].min()}..{frame['day'].max()}" if "day" in frame.columns and frame.height else "no day"
    return (
        f"{frame.height:,} {what} ({days}), {int(frame['is_fraud'].sum()):,} frauds, "
        f"{clusters.count:,} customers resampled"
    )


def versus_rules(decided: pl.DataFrame, settings: FraudSettings) -> list[Comparison]:
    """Recall and precision of the cascade's flags against the rules-only flags on the same test rows
    (decided: is_fraud, flagged, rule_score, customer_id)."""
    clusters = Clusters(decided["customer_id"].to_numpy())
    y = decided["is_fraud"].to_numpy()
    ours = decided["flagged"].to_numpy()
    rules = (decided["rule_score"] >= settings.rules.baseline_flag_threshold).to_numpy()
    rows = _rows(decided, clusters, "test payments")
    common = {"units": clusters.count, "settings": settings.gate.comparison, "rows": rows}
    return [
        promotion.compare(
            "rules only",
            "recall",
            challenger=share(y & ours, y, clusters),
            other=share(y & rules, y, clusters),
            support=int(y.sum()),
            support_unit="frauds",
            **common,
        ),
        promotion.compare(
            "rules only",
            "precision",
            challenger=share(y & ours, ours, clusters),
            other=share(y & rules, rules, clusters),
            support=int(min(ours.sum(), rules.sum())),
            support_unit="flagged payments",
            **common,
        ),
    ]


def versus_champion(
    challenger: pl.DataFrame, champion: pl.DataFrame, champion_version: str, settings: FraudSettings, cutoff: str
) -> Comparison:
    """Average precision of both models' final scores on the same payments (each frame: tx_id, day,
    customer_id, is_fraud, score), which lie after both training cut-offs."""
    rows = challenger.select("tx_id", "day", "customer_id", "is_fraud", "score").join(
        champion.select("tx_id", theirs="score"), on="tx_id", how="inner"
    )
    clusters = Clusters(rows["customer_id"].to_numpy())
    y = rows["is_fraud"].to_numpy()
    return promotion.compare(
        f"champion v{champion_version}",
        CHAMPION_METRIC,
        challenger=average_precision(y, rows["score"].to_numpy(), clusters),
        other=average_precision(y, rows["theirs"].to_numpy(), clusters),
        units=clusters.count,
        support=int(y.sum()),
        support_unit="frauds",
        settings=settings.gate.comparison,
        rows=_rows(rows, clusters, f"test payments after {cutoff}"),
        basis="same rows, after both training cut-offs, each model with its own rules",
    )


def no_fair_champion_comparison(champion_version: str, reason: str) -> Comparison:
    return promotion.no_fair_comparison(f"champion v{champion_version}", CHAMPION_METRIC, reason)


def gate(
    metrics: dict[str, float],
    version: str,
    champion: str | None,
    settings: FraudSettings,
    comparisons: list[Comparison] | tuple[Comparison, ...] = (),
    window: str = "the test window",
) -> Verdict:
    """The verdict: the seed's floors on the test window, and the comparisons."""
    g = settings.gate
    ap = metrics.get("average_precision")
    headline = f"recall {metrics['recall']:.3f}, precision {metrics['precision']:.3f}"
    return Verdict(
        settings.cascade.registered_model_name,
        version,
        champion,
        floors=(
            Floor("recall", metrics["recall"], g.min_recall),
            Floor("precision", metrics["precision"], g.min_precision),
        ),
        comparisons=tuple(comparisons),
        window=window,
        headline=headline + (f", AP {ap:.4f}" if ap is not None and ap == ap else ""),
    )
