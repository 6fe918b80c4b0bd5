"""Performance of published scores once their labels have matured."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score

from lakehouse.churn.config import ChurnSettings
from lakehouse.churn.model import ScoredBatch
from lakehouse.common.drift import ks_statistic, psi


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict  # always carries "value" and "threshold" for the alert table


def scoring_checks(batch: ScoredBatch, reference_scores: np.ndarray, customers: int, settings: ChurnSettings) -> list[CheckOutcome]:
    """The seed's weekly monitoring: prediction volume, score distribution shift, batch latency."""
    n = batch.scores.height
    low, high = settings.volume_bounds(customers)
    current = batch.scores["score"].to_numpy()
    ks = ks_statistic(reference_scores, current) if n else 1.0
    return [
        CheckOutcome("prediction_volume", low <= n <= high, {"value": n, "threshold": f"[{low}, {high}]"}),
        CheckOutcome(
            "score_shift",
            ks <= settings.max_score_shift_ks,
            {"value": ks, "threshold": f"ks <= {settings.max_score_shift_ks}", "psi": psi(reference_scores, current) if n else None},
        ),
        CheckOutcome(
            "scoring_latency",
            batch.seconds < settings.scoring_latency_budget_s,
            {"value": batch.seconds, "threshold": f"< {settings.scoring_latency_budget_s} s", "customers": n},
        ),
    ]


def monthly_performance(scored: pl.DataFrame) -> pl.DataFrame:
    """AUC-PR per calendar month of snapshot, over scores whose 30-day label has matured."""
    matured = scored.filter(pl.col("matured_30d")).with_columns(month=pl.col("snapshot_date").dt.truncate("1mo"))
    rows = []
    for (month,), part in matured.group_by("month", maintain_order=True):
        y = part["churned_30d"].cast(pl.Int64).to_numpy()
        if 0 < y.sum() < y.size:
            rows.append({"month": month, "rows": part.height, "churners": int(y.sum()), "auc_pr": float(average_precision_score(y, part["score"].to_numpy()))})
    return pl.DataFrame(rows, schema={"month": pl.Date, "rows": pl.Int64, "churners": pl.Int64, "auc_pr": pl.Float64}).sort("month")
