"""Checks of the live decision log: feature drift vs training, layer-3 traffic, decision rates."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from lakehouse.common.checks import CheckOutcome
from lakehouse.common.drift import ks_statistic
from lakehouse.fraud.settings import FraudSettings


def live_features(log: pl.DataFrame) -> pl.DataFrame:
    """The layer-2 inputs recorded with each decision taken with the store (degraded ones excluded)."""
    rows = log.filter(~pl.col("degraded"))["features"].to_list()
    return pl.DataFrame([json.loads(r) for r in rows]) if rows else pl.DataFrame()


def _too_few(count: int, settings: FraudSettings) -> bool:
    return count < settings.monitoring.min_decisions_for_checks


def feature_drift(
    reference: pl.DataFrame, log: pl.DataFrame, settings: FraudSettings, not_compared: dict[str, str] | None = None
) -> CheckOutcome:
    """Two-sample KS of each layer-2 input between the reference and the day's decisions; `not_compared` names
    the features left out, with the reason (see `Registry.not_comparable_daily`)."""
    limit = settings.monitoring.max_feature_drift_ks
    live = live_features(log)
    not_compared = not_compared or {}
    columns = [c for c in live.columns if c in reference.columns and c not in not_compared]
    threshold = f"KS <= {limit}"
    description = (
        "Layer-2 inputs of the day vs the test window of the champion's training (two-sample KS, worst feature)."
    )
    skipped = {
        "not_compared": pl.DataFrame(
            {"feature": list(not_compared), "reason": list(not_compared.values())},
            schema={"feature": pl.String, "reason": pl.String},
        )
    }
    if _too_few(live.height, settings) or not columns:
        return CheckOutcome(
            "feature_drift",
            True,
            0.0,
            threshold,
            description,
            metadata={"note": f"{live.height} decisions: too few to test", **skipped},
        )
    stats = {
        c: ks_statistic(reference[c].cast(pl.Float64).to_numpy(), live[c].cast(pl.Float64).fill_null(np.nan).to_numpy())
        for c in columns
    }
    worst = max(stats, key=stats.get)
    top = (
        pl.DataFrame({"feature": list(stats), "ks": [round(v, 3) for v in stats.values()]})
        .sort("ks", descending=True)
        .head(10)
    )
    return CheckOutcome(
        "feature_drift",
        bool(stats[worst] <= limit),
        round(stats[worst], 3),
        threshold,
        description,
        metadata={"worst_feature": worst, "decisions": live.height, "top": top, **skipped},
    )


def layer3_share(log: pl.DataFrame, settings: FraudSettings) -> CheckOutcome:
    low, high = settings.monitoring.layer3_share_band
    share = float((log["layer"] == 3).mean()) if log.height else 0.0
    ok = bool(_too_few(log.height, settings) or low <= share <= high)
    return CheckOutcome(
        "layer3_share",
        ok,
        round(share * 100, 2),
        f"[{low:.1%}, {high:.1%}] of decisions (value in %)",
        f"Share of decisions re-scored by layer 3 (latency budget {settings.cascade.layer3_max_share:.0%}).",
        metadata={"decisions": log.height},
    )


def decision_rate(log: pl.DataFrame, expected_flag_rate: float, settings: FraudSettings) -> CheckOutcome:
    """Share of review + block decisions vs the rate measured on the test window, within a factor beyond noise:
    out of the band, and a count that unlikely (`flag_rate_alpha`, binomial) even at the band's nearer edge."""
    from scipy.stats import binom

    n = log.height
    flags = int((log["decision"] != "approve").sum()) if n else 0
    rate = flags / n if n else 0.0
    m = settings.monitoring
    low, high = expected_flag_rate / m.max_flag_rate_ratio, expected_flag_rate * m.max_flag_rate_ratio
    p_low = float(binom.cdf(flags, n, low)) if n else 1.0  # P(this few or fewer) at the low edge
    p_high = float(binom.sf(flags - 1, n, min(high, 1.0))) if n else 1.0  # P(this many or more) at the high edge
    ok = bool(_too_few(n, settings) or (p_low >= m.flag_rate_alpha and p_high >= m.flag_rate_alpha))
    return CheckOutcome(
        "decision_rate",
        ok,
        round(rate * 100, 3),
        f"[{low:.3%}, {high:.3%}] beyond noise (binomial p >= {m.flag_rate_alpha}; test-window rate "
        f"{expected_flag_rate:.3%} x/÷ {m.max_flag_rate_ratio}; value in %)",
        "Review + block rate of the day vs the champion's test window.",
        metadata={
            "flags": flags,
            "p_at_low_edge": round(p_low, 4),
            "p_at_high_edge": round(p_high, 4),
            "block_rate_pct": round(float((log["decision"] == "block").mean()) * 100, 3) if log.height else 0.0,
            "degraded_pct": round(float(log["degraded"].mean()) * 100, 3) if log.height else 0.0,
            "decisions": log.height,
        },
    )
