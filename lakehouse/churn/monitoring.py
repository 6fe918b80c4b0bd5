"""Monitoring of the churn model in production: the volume of the raw usage and the drift of the model's inputs in
each scored week, and the performance of published scores once their labels have matured."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

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


USAGE_WEEKS_SCHEMA = {"week_start": pl.Date, "active_days": pl.Int64, "customers": pl.Int64, "logins": pl.Int64}


def usage_volume(
    weekly: pl.DataFrame, snapshot: date, first_week: date | None, settings: ChurnSettings
) -> CheckOutcome:
    """The raw usage of the week before `snapshot` (the latest complete week: Monday `snapshot` - 7 .. Sunday) against
    the `usage_volume.trailing_weeks` complete weeks before it, in active customer-days.

    `weekly`: one row per Monday-based week with usage (`USAGE_WEEKS_SCHEMA`: customer-days with usage, customers
    with usage, logins); a week without a row had none. `first_week`: the week of the data's first day, left out (it
    usually starts mid-week), as is every week before it; None when there is no usage at all.

    Under a steady volume the week's count k and the trailing weeks' total T are Poisson with rates 1 : n, so given
    k + T, k is binomial(k + T, 1 / (n + 1)) (the exact conditional test of two Poisson rates, which also carries the
    uncertainty of the trailing mean). The week alerts when k is under `min_ratio` x the trailing mean and
    P(K <= k) < `alpha`. Real usage varies more than Poisson from week to week (holidays, shared shocks): on a large
    base the p-value is small for any visible dip and the ratio decides; on a small one the p-value does."""
    from scipy.stats import binomtest

    limits = settings.usage_volume
    threshold = f">= {limits.min_ratio} x the trailing weeks' mean (or binomial p >= {limits.alpha})"
    week = snapshot - timedelta(weeks=1)
    span = f"{week}..{snapshot - timedelta(days=1)}"
    earliest = week - timedelta(weeks=limits.trailing_weeks)
    if first_week is not None:
        earliest = max(earliest, first_week + timedelta(weeks=1))
    trailing = [earliest + timedelta(weeks=i) for i in range(max((week - earliest).days // 7, 0))]
    if first_week is None or week <= first_week or len(trailing) < limits.min_weeks:
        have = "no usage recorded" if first_week is None else f"{len(trailing)} complete week(s) before {week}"
        return CheckOutcome(
            "usage_volume",
            True,
            None,
            threshold,
            f"nothing to compare: {have} (at least {limits.min_weeks} needed, usage_volume.min_weeks)",
        )
    weeks = (
        pl.DataFrame({"week_start": [*trailing, week]}, schema={"week_start": pl.Date})
        .join(weekly.cast(USAGE_WEEKS_SCHEMA).select(*USAGE_WEEKS_SCHEMA), on="week_start", how="left")
        .fill_null(0)
        .sort("week_start")
    )
    before, current = weeks.head(len(trailing)), weeks.row(-1, named=True)
    k, total, n = current["active_days"], int(before["active_days"].sum()), len(trailing)
    expected = total / n
    if expected == 0:
        return CheckOutcome("usage_volume", True, None, threshold, f"no usage in the {n} weeks before {week}")
    ratio = k / expected
    p_value = float(binomtest(k, k + total, 1 / (n + 1), alternative="less").pvalue)
    low = ratio < limits.min_ratio and p_value < limits.alpha
    customers_expected = float(before["customers"].mean())
    verdict = (
        f"below {limits.min_ratio} x and beyond chance"
        if low
        else "within chance"
        if ratio < limits.min_ratio
        else f"at or above {limits.min_ratio} x"
    )
    return CheckOutcome(
        "usage_volume",
        not low,
        round(ratio, 3),
        threshold,
        f"Usage of the week {span}: {k:,} active customer-days vs {expected:,.1f} a week over the {n} weeks before "
        f"({ratio:.2f} x, binomial p {p_value:.2g}): {verdict}; customers with usage {current['customers']:,} vs "
        f"{customers_expected:,.1f}",
        metadata={
            "week": span,
            "active_days": k,
            "expected_active_days": round(expected, 1),
            "p_value": float(f"{p_value:.3g}"),
            "customers_with_usage": current["customers"],
            "expected_customers": round(customers_expected, 1),
            "logins": current["logins"],
            "trailing_weeks": n,
            "weeks": weeks,
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
