"""Layer 1: deterministic rules (< 1 ms), some of them learnt from the labelled training days.

Learnt: lists of fraudulent payee IBANs, suspicious IPs and blacklisted countries (where those
columns exist, plus a configured static country list), and a risky-merchant rule on the
merchant's known fraud rate (labels known at decision time), whose threshold and weight come
from the training days: the lowest rate whose payments reach the configured precision, and
the precision measured there. Patterns: card testing, velocity burst, new device in a new
country, amount spike. One function, `rule_hits`, scores a transaction from its raw fields
and its features, for both the batch evaluation and the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lakehouse.fraud.features_registry import Registry
from lakehouse.fraud.settings import FraudSettings

LIST_NAMES = ("ibans", "ips", "countries")
RISKY_MERCHANT = "risky_merchant"


@dataclass(frozen=True)
class RuleLists:
    """What layer 1 learnt: lists, and the risky-merchant threshold and weight (None: no rule)."""

    ibans: frozenset[str] = frozenset()
    ips: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    thresholds: dict[str, float] = field(default_factory=dict)  # risky_merchant_rate, risky_merchant_weight

    def as_frame(self) -> pl.DataFrame:
        rows = [("list", name, value) for name in LIST_NAMES for value in sorted(getattr(self, name))]
        rows += [("threshold", name, repr(value)) for name, value in sorted(self.thresholds.items())]
        return pl.DataFrame(rows, schema={"kind": pl.String, "name": pl.String, "value": pl.String}, orient="row")

    @classmethod
    def from_frame(cls, df: pl.DataFrame) -> RuleLists:
        lists = df.filter(pl.col("kind") == "list")
        thresholds = df.filter(pl.col("kind") == "threshold")
        return cls(
            **{name: frozenset(lists.filter(pl.col("name") == name)["value"].to_list()) for name in LIST_NAMES},
            thresholds={n: float(v) for n, v in thresholds.select("name", "value").iter_rows()},
        )

    def summary(self) -> dict[str, int | float | str]:
        return {
            **{name: len(getattr(self, name)) for name in LIST_NAMES},
            **{
                k: round(self.thresholds[k], 4) if k in self.thresholds else "no rule"
                for k in ("risky_merchant_rate", "risky_merchant_weight")
            },
        }


def merchant_rule_features(registry: Registry) -> tuple[str, str]:
    longest = max(registry.settings.history_days)
    return f"merchant_hist_fraud_rate_{longest}d", f"merchant_hist_frauds_{longest}d"


def rule_features(registry: Registry) -> tuple[str, ...]:
    """The features the rules read (the service computes them with layer 2's)."""
    return (
        "card_small_5m",
        "customer_count_1m",
        "new_device",
        "new_country",
        "cust_tx_before",
        "amount_ratio_mean",
        *merchant_rule_features(registry),
    )


def build_lists(
    history: pl.DataFrame, features: pl.DataFrame, registry: Registry, settings: FraudSettings
) -> RuleLists:
    """Rules learnt from labelled transactions and their features (the training days only)."""
    s = settings.rules

    def risky(
        column: str, min_frauds: int, min_share: float, min_tx: int = 1, where: pl.Expr | None = None
    ) -> frozenset[str]:
        if column not in history.columns:
            return frozenset()
        df = history if where is None else history.filter(where)
        stats = (
            df.filter(pl.col(column).is_not_null()).group_by(column).agg(frauds=pl.col("is_fraud").sum(), tx=pl.len())
        )
        hit = stats.filter(
            (pl.col("frauds") >= min_frauds) & (pl.col("frauds") / pl.col("tx") >= min_share) & (pl.col("tx") >= min_tx)
        )
        return frozenset(hit[column].to_list())

    transfers = pl.col("channel").is_in(list(settings.transfer_channels))
    return RuleLists(
        ibans=risky("payee_iban", s.iban_min_frauds, s.iban_min_share, where=transfers),
        ips=risky("ip", s.ip_min_frauds, s.ip_min_share),
        countries=risky("country", 1, s.country_min_rate, s.country_min_tx) | frozenset(s.static_blacklisted_countries),
        thresholds=_risky_merchant(features, registry, settings),
    )


def _risky_merchant(features: pl.DataFrame, registry: Registry, settings: FraudSettings) -> dict[str, float]:
    rate, frauds = merchant_rule_features(registry)
    if rate not in features.columns:
        return {}
    known = features.filter(pl.col(frauds) >= settings.rules.merchant_min_frauds).sort(rate, descending=True)
    if known.is_empty():
        return {}
    y = known["is_fraud"].cast(pl.Float64).to_numpy()
    rates = known[rate].to_numpy()
    precision = np.cumsum(y) / np.arange(1, y.size + 1)
    # cut only between distinct rates, so that every payment at the chosen rate is flagged
    last_of_rate = np.append(rates[1:] != rates[:-1], True)
    ok = np.nonzero(
        last_of_rate
        & (precision >= settings.rules.merchant_min_precision)
        & (np.cumsum(y) >= settings.rules.merchant_min_frauds)
    )[0]
    if not ok.size:
        return {}
    cut = ok.max()
    return {"risky_merchant_rate": float(rates[cut]), "risky_merchant_weight": float(min(precision[cut], 0.99))}


def rule_hits(tx: dict, features: dict, lists: RuleLists, registry: Registry, settings: FraudSettings) -> list[str]:
    """Names of the rules a transaction triggers (features missing from the dict do not fire)."""
    s = settings.rules
    hits = []
    if tx.get("channel") in registry.transfer_channels and tx.get("payee_iban") in lists.ibans:
        hits.append("fraudulent_iban")
    if tx.get("ip") in lists.ips:
        hits.append("suspicious_ip")
    if tx.get("country") in lists.countries:
        hits.append("blacklisted_country")
    if (
        features.get("card_small_5m", 0.0) + (float(tx["amount"]) < registry.settings.small_amount)
        >= s.card_testing_small_tx
    ):
        hits.append("card_testing")
    if features.get("customer_count_1m", 0.0) + 1 >= s.velocity_burst_tx:
        hits.append("velocity_burst")
    if features.get("new_device", 0.0) and features.get("new_country", 0.0):
        hits.append("new_device_new_country")
    if (
        features.get("cust_tx_before", 0.0) >= s.amount_spike_min_history
        and features.get("amount_ratio_mean", 0.0) >= s.amount_spike_ratio
    ):
        hits.append("amount_spike")
    if "risky_merchant_rate" in lists.thresholds:
        rate, frauds = merchant_rule_features(registry)
        if (
            features.get(frauds, 0.0) >= s.merchant_min_frauds
            and features.get(rate, 0.0) >= lists.thresholds["risky_merchant_rate"]
        ):
            hits.append(RISKY_MERCHANT)
    return hits


def rule_score(hits: list[str], lists: RuleLists, settings: FraudSettings) -> float:
    keep = 1.0
    for h in hits:
        weight = (
            lists.thresholds["risky_merchant_weight"] if h == RISKY_MERCHANT else getattr(settings.rules.weights, h)
        )
        keep *= 1.0 - weight
    return 1.0 - keep


RAW_FIELDS = ("channel", "payee_iban", "ip", "country")


def batch_rules(
    features: pl.DataFrame, raw: pl.DataFrame, lists: RuleLists, registry: Registry, settings: FraudSettings
) -> pl.DataFrame:
    """tx_id, rule_score and rule_hits of every transaction (the same function as online)."""
    cols = [c for c in RAW_FIELDS if c in raw.columns and c not in features.columns]
    needed = [c for c in rule_features(registry) if c in features.columns]
    df = features.select("tx_id", *[c for c in ("channel",) if c in features.columns], *needed, "amount").join(
        raw.select("tx_id", *cols), on="tx_id", how="left"
    )
    scores, names = [], []
    for row in df.iter_rows(named=True):
        hits = rule_hits(row, row, lists, registry, settings)
        scores.append(rule_score(hits, lists, settings))
        names.append(",".join(hits))
    return df.select("tx_id").with_columns(
        rule_score=pl.Series(scores, dtype=pl.Float64), rule_hits=pl.Series(names, dtype=pl.String)
    )
