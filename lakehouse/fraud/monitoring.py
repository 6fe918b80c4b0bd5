"""Checks of the live decision log: feature drift vs training, layer-3 traffic, decision rates."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from lakehouse.common.drift import ks_statistic
from lakehouse.fraud.config import FraudSettings


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict  # always carries "value" and "threshold" for the alert table


def live_features(log: pl.DataFrame) -> pl.DataFrame:
    """The layer-2 inputs recorded with each decision taken with the store (degraded ones excluded)."""
    rows = log.filter(~pl.col("degraded"))["features"].to_list()
    return pl.DataFrame([json.loads(r) for r in rows]) if rows else pl.DataFrame()


def feature_drift(reference: pl.DataFrame, log: pl.DataFrame, settings: FraudSettings) -> CheckOutcome:
    live = live_features(log)
    columns = [c for c in live.columns if c in reference.columns]
    if live.height < settings.min_decisions_for_checks or not columns:
        return CheckOutcome("feature_drift", True, {"value": 0.0, "threshold": f"ks <= {settings.max_feature_drift_ks}", "note": f"{live.height} decisions: too few to test"})
    stats = {c: ks_statistic(reference[c].cast(pl.Float64).to_numpy(), live[c].cast(pl.Float64).fill_null(np.nan).to_numpy()) for c in columns}
    worst = max(stats, key=stats.get)
    table = "\n".join(["| feature | KS |", "|---|---|", *(f"| {c} | {v:.3f} |" for c, v in sorted(stats.items(), key=lambda kv: -kv[1])[:10])])
    return CheckOutcome(
        "feature_drift",
        bool(stats[worst] <= settings.max_feature_drift_ks),
        {"value": stats[worst], "threshold": f"ks <= {settings.max_feature_drift_ks}", "worst_feature": worst, "decisions": live.height, "top": table},
    )


def layer3_share(log: pl.DataFrame, settings: FraudSettings) -> CheckOutcome:
    low, high = settings.layer3_share_band
    share = float((log["layer"] == 3).mean()) if log.height else 0.0
    ok = bool(log.height < settings.min_decisions_for_checks or low <= share <= high)
    return CheckOutcome("layer3_share", ok, {"value": share, "threshold": f"[{low}, {high}]", "decisions": log.height})


def decision_rate(log: pl.DataFrame, expected_flag_rate: float, settings: FraudSettings) -> CheckOutcome:
    """Share of review + block decisions vs the rate measured on the test days, within a factor."""
    rate = float((log["decision"] != "approve").mean()) if log.height else 0.0
    r = settings.max_flag_rate_ratio
    low, high = expected_flag_rate / r, expected_flag_rate * r
    ok = bool(log.height < settings.min_decisions_for_checks or low <= rate <= high)
    return CheckOutcome(
        "decision_rate",
        ok,
        {
            "value": rate,
            "threshold": f"[{low:.4f}, {high:.4f}] (test-day rate {expected_flag_rate:.4f} x/÷ {r})",
            "block_rate": float((log["decision"] == "block").mean()) if log.height else 0.0,
            "degraded_share": float(log["degraded"].mean()) if log.height else 0.0,
            "decisions": log.height,
        },
    )
