"""LLMOps monitoring of the routed tickets: confidence, human validation rate, category-mix
drift and the monthly confusion matrix. Each check returns its outcome with value and threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.common.checks import CheckOutcome
from lakehouse.triage.model import HUMAN, OUT_OF_SCOPE
from lakehouse.triage.settings import MonitoringSettings

EPS = 1e-4


def mean_confidence_check(routes: pl.DataFrame, limits: MonitoringSettings) -> CheckOutcome:
    value = round(float(routes["confidence"].mean()), 4)
    return CheckOutcome(
        "mean_confidence",
        value >= limits.min_mean_confidence,
        value,
        f">= {limits.min_mean_confidence}",
        f"mean confidence {value:.3f} over {routes.height} tickets",
        metadata={"tickets": routes.height},
    )


def human_validation_rate_check(routes: pl.DataFrame, limits: MonitoringSettings) -> CheckOutcome:
    queued = routes["route"] == HUMAN
    value = round(float(queued.mean()), 4)
    out_of_scope = int((routes["reason"] == OUT_OF_SCOPE).sum())
    return CheckOutcome(
        "human_validation_rate",
        value <= limits.max_human_validation_rate,
        value,
        f"<= {limits.max_human_validation_rate:.0%}",
        f"{value:.1%} of tickets sent to human validation ({out_of_scope} of them out of scope)",
        metadata={"queued": int(queued.sum()), "out_of_scope": out_of_scope, "rate": f"{value:.1%}"},
    )


def mix_psi(reference: dict[str, float], current: dict[str, float]) -> float:
    """Population stability index between two category mixes (shares), over the union of categories."""
    cats = sorted(set(reference) | set(current))
    ref = np.clip(np.array([reference.get(c, 0.0) for c in cats]), EPS, None)
    cur = np.clip(np.array([current.get(c, 0.0) for c in cats]), EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def mix_drift_check(predicted: pl.Series, reference: dict[str, float], limits: MonitoringSettings) -> CheckOutcome:
    """Predicted category mix of the month vs the champion's training mix: PSI alerts, chi-square reported."""
    from scipy.stats import chisquare

    current = {r[predicted.name]: r["count"] / predicted.len() for r in predicted.value_counts().to_dicts()}
    psi_value = mix_psi(reference, current)
    cats = sorted(set(reference) | set(current))
    observed = np.array([current.get(c, 0.0) * predicted.len() for c in cats])
    expected = np.clip(np.array([reference.get(c, 0.0) for c in cats]), EPS, None)
    expected = expected / expected.sum() * observed.sum()
    p_value = float(chisquare(observed, expected).pvalue)
    table = pl.DataFrame(
        {
            "category": cats,
            "training_share": [reference.get(c, 0.0) for c in cats],
            "month_share": [current.get(c, 0.0) for c in cats],
        }
    )
    return CheckOutcome(
        "category_mix_drift",
        psi_value <= limits.max_mix_psi,
        round(psi_value, 4),
        f"PSI <= {limits.max_mix_psi}",
        f"category-mix PSI {psi_value:.3f} vs the training mix (chi-square p={p_value:.3g})",
        metadata={"chi_square_p_value": float(f"{p_value:.3g}"), "mix": table},
    )


def confusion(true: pl.Series, predicted: pl.Series) -> tuple[list[str], np.ndarray]:
    cats = sorted(set(true.to_list()) | set(predicted.to_list()))
    index = {c: i for i, c in enumerate(cats)}
    matrix = np.zeros((len(cats), len(cats)), dtype=np.int64)
    np.add.at(matrix, ([index[c] for c in true], [index[c] for c in predicted]), 1)
    return cats, matrix


def per_category(cats: list[str], matrix: np.ndarray) -> pl.DataFrame:
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    diag = np.diag(matrix)
    return pl.DataFrame(
        {
            "category": cats,
            "support": support,
            "recall": np.where(support > 0, diag / np.maximum(support, 1), np.nan),
            "precision": np.where(predicted > 0, diag / np.maximum(predicted, 1), np.nan),
        }
    )


def category_recall_check(stats: pl.DataFrame, limits: MonitoringSettings) -> CheckOutcome:
    """The worst recall among categories with enough tickets in the month."""
    threshold = f">= {limits.min_category_recall} per category with >= {limits.min_category_support} tickets"
    enough = stats.filter(pl.col("support") >= limits.min_category_support)
    if enough.is_empty():
        return CheckOutcome("category_recall", True, None, threshold, "no category has enough tickets to judge")
    worst = enough.sort("recall").row(0, named=True)
    return CheckOutcome(
        "category_recall",
        worst["recall"] >= limits.min_category_recall,
        round(float(worst["recall"]), 4),
        threshold,
        f"lowest recall: {worst['category']} {worst['recall']:.3f} on {worst['support']} tickets",
        metadata={"worst_category": worst["category"]},
    )


def confusion_markdown(cats: list[str], matrix: np.ndarray) -> str:
    short = [c[:14] for c in cats]
    lines = ["| true \\ predicted | " + " | ".join(short) + " |", "|---|" + "---|" * len(cats)]
    lines += [f"| {cats[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(matrix)]
    return "\n".join(lines)


def plot_confusion(cats: list[str], matrix: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.45 * len(cats) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cats)), cats, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(cats)), cats, fontsize=7)
    if len(cats) <= 20:
        for i in range(len(cats)):
            for j in range(len(cats)):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if rows[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("agent label")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
