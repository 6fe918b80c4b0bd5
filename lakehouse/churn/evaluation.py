"""Any registered churn model version on any window of the stored training set, and the like-for-like
comparison the Go/No-Go gate makes between a challenger and the champion.

Like for like: both versions score exactly the same rows, matured snapshots that lie after both
versions' training cut-offs (`trained_until`, the last day of a label either learnt from), so neither
has seen their outcome. The rows of one customer across weekly snapshots are not independent: the
interval on the AUC-PR gain is bootstrapped over customers (every row of a drawn customer enters the
resample, weighted by how often the customer was drawn), through lakehouse.common.promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from lakehouse.churn.model import LABEL, evaluate, load_version, predict
from lakehouse.churn.settings import CASE, ChurnSettings
from lakehouse.common import promotion
from lakehouse.common.lake import Lake
from lakehouse.common.promotion import Comparison
from lakehouse.common.registry import Registry
from lakehouse.common.settings import DateRange

SNAPSHOT = "snapshot_date"
METRIC = "AUC-PR"


# --------------------------------------------------------------------------- AUC-PR over clusters


class ClusteredAveragePrecision:
    """Average precision (sklearn's `average_precision_score`) of fixed scores on rows weighted by how
    many times their customer was drawn: `self(customers)` for an array of customer indices, repeats
    allowed. The rows are sorted once, so one resample costs two cumulative sums."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, customer_of_row: np.ndarray):
        order = np.argsort(-scores, kind="mergesort")
        self.labels = labels[order].astype(np.float64)
        self.customer = customer_of_row[order]
        self.customers = int(customer_of_row.max()) + 1 if customer_of_row.size else 0
        ranked = scores[order]
        # A threshold at each distinct score: the last row of every run of ties.
        self.thresholds = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]

    def __call__(self, drawn: np.ndarray) -> float:
        weights = np.bincount(drawn, minlength=self.customers)[self.customer].astype(np.float64)
        return weighted_average_precision(self.labels, weights, self.thresholds)


def weighted_average_precision(labels: np.ndarray, weights: np.ndarray, thresholds: np.ndarray) -> float:
    """AP = sum over thresholds of (recall step) x precision, on rows sorted by descending score."""
    true_positives = np.cumsum(weights * labels)[thresholds]
    flagged = np.cumsum(weights)[thresholds]
    if true_positives.size == 0 or true_positives[-1] <= 0:
        return float("nan")
    precision = np.divide(true_positives, flagged, out=np.zeros_like(flagged), where=flagged > 0)
    recall_step = np.diff(true_positives, prepend=0.0) / true_positives[-1]
    return float(np.sum(recall_step * precision))


# --------------------------------------------------------------------------- what a version learnt from


@dataclass(frozen=True)
class VersionInfo:
    version: str
    trained_until: date | None  # None: the version does not say (no `trained_until` tag)
    test: DateRange | None  # its own out-of-time test period (run params)


def version_info(registry: Registry, model_name: str, version: str) -> VersionInfo:
    model_version = registry.client.get_model_version(model_name, version)
    until = model_version.tags.get(promotion.TRAINED_UNTIL_TAG)
    params = registry.client.get_run(model_version.run_id).data.params
    test = (
        DateRange(start=params["split_test_start"], end=params["split_test_end"])
        if {"split_test_start", "split_test_end"} <= set(params)
        else None
    )
    return VersionInfo(version, date.fromisoformat(until) if until else None, test)


def labelled_rows(lake: Lake, window: DateRange) -> pl.DataFrame:
    """The stored training set's snapshots in `window` whose 30-day label has matured."""
    rows = lake.read(CASE, "training_set")
    return rows.filter(pl.col("matured_30d") & pl.col(SNAPSHOT).is_between(window.start, window.end)).sort(
        SNAPSHOT, "customer_id"
    )


# --------------------------------------------------------------------------- the comparison


def compare_versions(
    lake: Lake, registry: Registry, settings: ChurnSettings, challenger: str, other: str, window: DateRange
) -> Comparison:
    """The challenger against `other` (the champion) on the matured rows of `window` after both cut-offs,
    AUC-PR with a bootstrap interval over customers; `no_fair_comparison` with the reason when no such
    rows exist (the floors then decide alone)."""
    name = settings.registered_model_name
    against = f"champion v{other}"
    infos = [version_info(registry, name, v) for v in (challenger, other)]
    unknown = [f"v{i.version}" for i in infos if i.trained_until is None]
    if unknown:
        return promotion.no_fair_comparison(
            against, METRIC, f"{' and '.join(unknown)} record no training cut-off (tag `trained_until`)"
        )
    cut = max(i.trained_until for i in infos)
    rows = labelled_rows(lake, window).filter(pl.col(SNAPSHOT) > cut)
    churned = rows.filter(pl.col(LABEL))
    if rows.is_empty() or churned.is_empty() or churned.height == rows.height:
        found = "no matured snapshot" if rows.is_empty() else f"{rows.height:,} rows of one outcome only"
        return promotion.no_fair_comparison(
            against,
            METRIC,
            f"{found} in {window.start}..{window.end} after both cut-offs "
            f"(v{challenger} trained until {infos[0].trained_until}, v{other} until {infos[1].trained_until})",
        )
    customers, unit = np.unique(rows["customer_id"].to_numpy(), return_inverse=True)  # each row's customer
    labels = rows[LABEL].to_numpy()
    ours, theirs = (
        ClusteredAveragePrecision(labels, predict(load_version(registry, name, v), rows), unit)
        for v in (challenger, other)
    )
    snapshots = rows[SNAPSHOT]
    return promotion.compare(
        against,
        METRIC,
        challenger=ours,
        other=theirs,
        units=customers.size,
        support=churned["customer_id"].n_unique(),
        support_unit="churned customers",
        settings=settings.gate.comparison,
        rows=(
            f"{rows.height:,} rows of {snapshots.n_unique()} snapshots {snapshots.min()}..{snapshots.max()} "
            f"(after both cut-offs, {cut}), {customers.size:,} customers"
        ),
        basis="same rows, after both training cut-offs; bootstrap over customers",
    )


# --------------------------------------------------------------------------- any version, any window


@dataclass(frozen=True)
class VersionEvaluation:
    """One version's figures on the matured rows of a window, and its comparison with the champion."""

    version: str
    window: DateRange
    metrics: dict[str, float] | None  # None: no row of both outcomes in the window
    rows: int
    in_sample_rows: int  # rows on or before the version's training cut-off (its figures are then optimistic)
    trained_until: date | None
    comparison: Comparison | None  # None: no champion, or the version is the champion

    def summary(self) -> pl.DataFrame:
        m = self.metrics or {}
        return pl.DataFrame(
            {
                "figure": ["AUC-ROC", "AUC-PR", "Recall@top20%", "rows", "churners", "in-sample rows"],
                "value": [
                    m.get("auc_roc"),
                    m.get("auc_pr"),
                    m.get("recall_top20"),
                    float(self.rows),
                    float(m.get("positives", 0)),
                    float(self.in_sample_rows),
                ],
            }
        )

    def comparison_table(self) -> pl.DataFrame:
        """The comparison with the champion: both figures on the same rows, the gain and its interval."""
        c = self.comparison
        low, high = (c.interval or (None, None)) if c else (None, None)
        return pl.DataFrame(
            {
                "against": [c.against] if c else [],
                "this_version": [c.challenger] if c else [],
                "champion": [c.other] if c else [],
                "gain": [c.gain] if c else [],
                "low": [low] if c else [],
                "high": [high] if c else [],
                "support": [f"{c.support:,} {c.support_unit}"] if c else [],
                "status": [c.status] if c else [],
            },
            schema={
                "against": pl.String,
                "this_version": pl.Float64,
                "champion": pl.Float64,
                "gain": pl.Float64,
                "low": pl.Float64,
                "high": pl.Float64,
                "support": pl.String,
                "status": pl.String,
            },
        )


def evaluate_version(
    lake: Lake,
    registry: Registry,
    settings: ChurnSettings,
    version: str,
    window: DateRange | None = None,
    champion: str | None = None,
) -> VersionEvaluation:
    """Score `version` on the matured rows of `window` (default: its own out-of-time test period), and,
    when a different `champion` is given, compare the two like for like on the same window."""
    name = settings.registered_model_name
    info = version_info(registry, name, version)
    window = window or info.test
    if window is None:
        raise ValueError(f"v{version} records no test period: give the window to evaluate it on")
    rows = labelled_rows(lake, window)
    labels = rows[LABEL]
    metrics = None
    if rows.height and 0 < labels.sum() < rows.height:
        scores = predict(load_version(registry, name, version), rows)
        metrics = evaluate(labels, scores, rows[SNAPSHOT], settings)
    in_sample = rows.filter(pl.col(SNAPSHOT) <= info.trained_until).height if info.trained_until else rows.height
    comparison = (
        compare_versions(lake, registry, settings, version, champion, window)
        if champion is not None and champion != version
        else None
    )
    return VersionEvaluation(version, window, metrics, rows.height, in_sample, info.trained_until, comparison)
