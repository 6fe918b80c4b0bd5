"""Layer 1: deterministic rules on lists and known patterns (< 1 ms).

The lists (fraudulent IBANs, suspicious IPs, blacklisted countries) are learnt from labelled
history of the training period only, plus a configured static country list; they are
published to Redis for the online service. One function, `rule_hits`, scores a transaction
from its raw fields and its features, for both the batch evaluation and the service.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakehouse.fraud.config import SETTINGS, FraudSettings

LIST_NAMES = ("ibans", "ips", "countries")


@dataclass(frozen=True)
class RuleLists:
    ibans: frozenset[str] = frozenset()
    ips: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()

    def as_frame(self) -> pl.DataFrame:
        rows = [(name, value) for name in LIST_NAMES for value in sorted(getattr(self, name))]
        return pl.DataFrame(rows, schema={"list": pl.String, "value": pl.String}, orient="row")

    @classmethod
    def from_frame(cls, df: pl.DataFrame) -> RuleLists:
        return cls(**{name: frozenset(df.filter(pl.col("list") == name)["value"].to_list()) for name in LIST_NAMES})


def build_lists(history: pl.DataFrame, settings: FraudSettings = SETTINGS) -> RuleLists:
    """Lists from labelled transactions (call it with the training period only)."""

    def risky(column: str, min_frauds: int, min_share: float, min_tx: int = 1, where: pl.Expr | None = None) -> frozenset[str]:
        if column not in history.columns:
            return frozenset()
        df = history if where is None else history.filter(where)
        stats = df.filter(pl.col(column).is_not_null()).group_by(column).agg(
            frauds=pl.col("is_fraud").sum(), tx=pl.len()
        )
        hit = stats.filter(
            (pl.col("frauds") >= min_frauds) & (pl.col("frauds") / pl.col("tx") >= min_share) & (pl.col("tx") >= min_tx)
        )
        return frozenset(hit[column].to_list())

    s = settings
    return RuleLists(
        ibans=risky("payee_iban", s.list_iban_min_frauds, s.list_iban_min_share, where=pl.col("channel") == "transfer"),
        ips=risky("ip", s.list_ip_min_frauds, s.list_ip_min_share),
        countries=risky("country", 1, s.list_country_min_rate, s.list_country_min_tx) | frozenset(s.static_blacklisted_countries),
    )


def rule_hits(tx: dict, features: dict, lists: RuleLists, settings: FraudSettings = SETTINGS) -> list[str]:
    """Names of the rules a transaction triggers (features missing from the dict do not fire)."""
    hits = []
    if tx.get("channel") == "transfer" and tx.get("payee_iban") in lists.ibans:
        hits.append("fraudulent_iban")
    if tx.get("ip") in lists.ips:
        hits.append("suspicious_ip")
    if tx.get("country") in lists.countries:
        hits.append("blacklisted_country")
    if features.get("card_small_5m", 0.0) + (float(tx["amount_eur"]) < settings.small_amount_eur) >= settings.card_testing_small_tx:
        hits.append("card_testing")
    if features.get("customer_count_1m", 0.0) + 1 >= settings.velocity_burst_tx:
        hits.append("velocity_burst")
    if features.get("new_device", 0.0) and features.get("new_country", 0.0):
        hits.append("new_device_new_country")
    if features.get("cust_tx_before", 0.0) >= settings.amount_spike_min_history and features.get("amount_ratio_mean", 0.0) >= settings.amount_spike_ratio:
        hits.append("amount_spike")
    return hits


def rule_score(hits: list[str], settings: FraudSettings = SETTINGS) -> float:
    keep = 1.0
    for h in hits:
        keep *= 1.0 - getattr(settings.rule_weights, h)
    return 1.0 - keep


RAW_FIELDS = ("channel", "payee_iban", "ip", "country", "amount_eur")
RULE_FEATURES = ("card_small_5m", "customer_count_1m", "new_device", "new_country", "cust_tx_before", "amount_ratio_mean")


def batch_rules(features: pl.DataFrame, raw: pl.DataFrame, lists: RuleLists, settings: FraudSettings = SETTINGS) -> pl.DataFrame:
    """tx_id, rule_score and rule_hits of every transaction (the same function as online)."""
    cols = [c for c in RAW_FIELDS if c in raw.columns and c != "amount_eur"]
    df = features.select("tx_id", *[c for c in RULE_FEATURES if c in features.columns], "amount_eur").join(
        raw.select("tx_id", *cols), on="tx_id", how="left"
    )
    scores, names = [], []
    for row in df.iter_rows(named=True):
        hits = rule_hits(row, row, lists, settings)
        scores.append(rule_score(hits, settings))
        names.append(",".join(hits))
    return df.select("tx_id").with_columns(rule_score=pl.Series(scores, dtype=pl.Float64), rule_hits=pl.Series(names, dtype=pl.String))
