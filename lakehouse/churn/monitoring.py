"""Monitoring of the churn model in production: the drift of its inputs in each scored week, and the
performance of published scores once their labels have matured."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from lakehouse.churn.settings import ChurnSettings
from lakehouse.common.checks import CheckOutcome
from lakehouse.common.drift import ks_test


def _values(df: pl.DataFrame, feature: str) -> np.ndarray:
    """A feature's values for the KS test, a missing value as -inf: below every value, so a change in the share
    of missing values (a CSAT no one gave) moves the statistic like any other change of the distribution."""
    return df[feature].cast(pl.Float64).fill_nan(None).fill_null(-np.inf).to_numpy()


def feature_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    features: Sequence[str],
    settings: ChurnSettings,
    against: str,
) -> CheckOutcome:
    """Each model input of the scored week (`current`) against the same features in `reference` (`against` says
    which weeks, for the description): a two-sample KS per feature. A feature drifts when its KS statistic exceeds
    `feature_drift.max_ks` and its p-value is under `feature_drift.alpha`; the check's value is the largest KS."""
    limits = settings.feature_drift
    threshold = f"KS <= {limits.max_ks} per feature (or p >= {limits.alpha})"
    compared = [f for f in features if f in reference.columns and f in current.columns]
    if reference.is_empty() or current.is_empty() or not compared:
        why = "no customer scored this week" if current.is_empty() else f"no reference: {against}"
        return CheckOutcome("feature_drift", True, None, threshold, f"nothing to compare ({why})")
    rows = []
    for feature in compared:
        ks, p_value = ks_test(_values(reference, feature), _values(current, feature))
        rows.append(
            {
                "feature": feature,
                "ks": round(ks, 4),
                "p_value": f"{p_value:.2g}",
                "reference_mean": reference[feature].cast(pl.Float64).mean(),
                "week_mean": current[feature].cast(pl.Float64).mean(),
                "drifted": ks > limits.max_ks and p_value < limits.alpha,
            }
        )
    table = pl.DataFrame(rows).sort("ks", descending=True)
    worst = table.row(0, named=True)
    drifted = table.filter(pl.col("drifted"))["feature"].to_list()
    moved = (
        f"{', '.join(drifted)} moved beyond KS {limits.max_ks}"
        if drifted
        else f"no feature moved beyond KS {limits.max_ks} and noise"
    )
    return CheckOutcome(
        "feature_drift",
        not drifted,
        worst["ks"],
        threshold,
        f"The model's {len(compared)} inputs of the week ({current.height:,} customers) vs {against} "
        f"({reference.height:,} rows): {moved}; largest KS {worst['ks']:.3f} on {worst['feature']}",
        metadata={
            "worst_feature": worst["feature"],
            "drifted_features": ", ".join(drifted) or "none",
            "reference": against,
            "customers": current.height,
            "reference_rows": reference.height,
            "features": table,
        },
    )


def monthly_performance(scored: pl.DataFrame) -> pl.DataFrame:
    """AUC-PR per calendar month of snapshot and model version (shadow or not), over scores whose 30-day
    label has matured."""
    from sklearn.metrics import average_precision_score

    matured = scored.filter(pl.col("matured_30d")).with_columns(month=pl.col("snapshot_date").dt.truncate("1mo"))
    rows = []
    for (month, version, shadow), part in matured.group_by("month", "model_version", "shadow", maintain_order=True):
        y = part["churned_30d"].cast(pl.Int64).to_numpy()
        if 0 < y.sum() < y.size:
            rows.append(
                {
                    "month": month,
                    "model_version": version,
                    "shadow": shadow,
                    "rows": part.height,
                    "churners": int(y.sum()),
                    "auc_pr": float(average_precision_score(y, part["score"].to_numpy())),
                }
            )
    schema = {
        "month": pl.Date,
        "model_version": pl.String,
        "shadow": pl.Boolean,
        "rows": pl.Int64,
        "churners": pl.Int64,
        "auc_pr": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort("month", "model_version")
