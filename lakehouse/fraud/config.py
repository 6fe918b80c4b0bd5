"""Every number of the fraud case in one place (seed case 3 unless said otherwise)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

CASE = "fraud"

# Transactions per day per named scale; full is the seed's 2M transactions/day.
SCALES = {"demo": 12_000, "full": 2_000_000}
TX_PER_CUSTOMER_DAY = 4.0
FULL_SCALE_FRAUD_RATE = 0.0008  # seed: 0.08 % of transactions
# At demo scale 0.08 % would leave about 10 frauds a day: too few to train and evaluate on,
# so the demo world raises the rate (and says so in its report).
DEMO_FRAUD_RATE = 0.01


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the synthetic payments world."""

    tx_per_day: int = SCALES["demo"]
    days: int = 9
    end_date: date = date(2026, 11, 23)  # exclusive: the last generated day is the day before
    seed: int = 3
    fraud_rate: float = DEMO_FRAUD_RATE
    merchants_per_1k_tx: float = 40.0
    # 1.0 = fraud shows the patterns of the seed; 0.0 = fraud is a random label (gate drill).
    signal_strength: float = 1.0

    @classmethod
    def from_env(cls) -> WorldConfig:
        # LAKEHOUSE_SCALE is shared by every case (demo | full); the case's own variable also takes counts.
        shared = os.environ.get("LAKEHOUSE_SCALE", "demo")
        scale = os.environ.get("LAKEHOUSE_FRAUD_SCALE") or (shared if shared in SCALES else "demo")
        tx = int(scale) if scale.isdigit() else SCALES[scale]
        seed = int(os.environ.get("LAKEHOUSE_SEED", cls.seed))
        rate = FULL_SCALE_FRAUD_RATE if tx >= SCALES["full"] else DEMO_FRAUD_RATE
        return cls(tx_per_day=tx, seed=seed, fraud_rate=rate)

    def with_(self, **changes) -> WorldConfig:
        return replace(self, **changes)

    @property
    def customers(self) -> int:
        return max(200, round(self.tx_per_day / TX_PER_CUSTOMER_DAY))

    @property
    def merchants(self) -> int:
        return max(50, round(self.tx_per_day / 1000 * self.merchants_per_1k_tx))

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days)

    @property
    def day_keys(self) -> list[str]:
        return [(self.start_date + timedelta(days=i)).isoformat() for i in range(self.days)]


MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class RuleWeights:
    """Layer-1 rules: each hit adds its weight; the rule score is 1 - prod(1 - weight)."""

    fraudulent_iban: float = 0.95
    suspicious_ip: float = 0.6
    blacklisted_country: float = 0.5
    card_testing: float = 0.7  # >= card_testing_small_tx small payments on the card in 5 minutes
    velocity_burst: float = 0.4  # >= velocity_burst_tx payments of the customer in 1 minute
    new_device_new_country: float = 0.5
    amount_spike: float = 0.35  # amount >= amount_spike_ratio x the customer's mean, with history


@dataclass(frozen=True)
class FraudSettings:
    windows_ms: tuple[int, ...] = (MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS, HOUR_MS, 6 * HOUR_MS, DAY_MS)
    small_amount_eur: float = 5.0  # a "small" payment, the card-testing signature
    # Online feature store
    window_ttl_s: int = 24 * 3600  # seed: TTL 24 h
    profile_ttl_s: int = 30 * 24 * 3600  # per-customer running profile (amount history, known devices)
    dedupe_ttl_s: int = 48 * 3600  # transaction ids already applied (idempotent replay)
    # Layer 1
    rule_weights: RuleWeights = field(default_factory=RuleWeights)
    card_testing_small_tx: int = 3
    velocity_burst_tx: int = 4
    amount_spike_ratio: float = 10.0
    amount_spike_min_history: int = 5
    rule_block_threshold: float = 0.9  # critical rule score: block at layer 1
    rules_only_flag_threshold: float = 0.35  # the rules-only baseline flags (review/block) from here
    # Lists learnt from labelled history (training period only)
    list_iban_min_frauds: int = 2
    list_iban_min_share: float = 0.5
    list_ip_min_frauds: int = 3
    list_ip_min_share: float = 0.3
    list_country_min_tx: int = 30
    list_country_min_rate: float = 0.2
    static_blacklisted_countries: tuple[str, ...] = ()
    # Cascade
    layer3_band: tuple[float, float] = (0.3, 0.8)  # seed: layer 3 only for layer-2 scores in [0.3, 0.8]
    negative_sample_rate: float = 0.1  # training keeps every fraud and this share of the rest
    target_precision: float = 0.7  # review threshold: the lowest with validation precision >= this
    block_precision: float = 0.9  # block threshold: the lowest with validation precision >= this
    test_days: int = 3
    valid_days: int = 2
    warmup_days: int = 1  # the first day lacks 24 h of history: not used for training
    lgbm_params: dict = field(
        default_factory=lambda: {
            "objective": "binary",
            "learning_rate": 0.08,
            "num_leaves": 31,
            "min_data_in_leaf": 30,
            "feature_fraction": 0.9,
            "lambda_l2": 1.0,
            "num_threads": 1,  # one thread: OpenMP spinning on a busy 2-core machine costs 10x
            "verbosity": -1,
        }
    )
    lgbm_rounds: int = 200
    xgb_params: dict = field(
        default_factory=lambda: {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "eta": 0.15,
            "max_depth": 5,
            "subsample": 0.9,
            "colsample_bytree": 0.5,
            "tree_method": "hist",
            "nthread": 1,
        }
    )
    xgb_rounds: int = 150
    early_stopping_rounds: int = 30
    registered_model_name: str = "fraud_cascade"
    # Promotion gate (out-of-time test period)
    gate_min_recall: float = 0.75
    gate_min_precision: float = 0.5
    # Monitoring of the live decision log
    max_feature_drift_ks: float = 0.2
    layer3_share_band: tuple[float, float] = (0.001, 0.5)
    max_flag_rate_ratio: float = 3.0  # live flag rate vs validation flag rate, either way
    min_decisions_for_checks: int = 200
    # Online service
    redis_timeout_s: float = 0.015
    redis_failures_to_open: int = 3  # failed reads in a row before the service stops asking Redis
    redis_retry_after_s: float = 0.5  # then skip Redis for this long before trying again
    model_poll_s: float = 2.0
    lists_poll_s: float = 5.0
    publish_batch: int = 500
    stream_maxlen: int = 5_000_000
    kafka_partitions: int = 4
    consumer_batch: int = 200
    decision_log_batch: int = 1000  # events per decision-log read (and Parquet part) at most
    decision_log_wait_s: float = 0.2  # after a smaller read, let events gather this long


SETTINGS = FraudSettings()

# The seed's own figures, shown beside ours in reports.
SEED_REFERENCE = {
    "rules_recall": 0.70,
    "rules_precision": 0.12,
    "cascade_recall": 0.87,
    "cascade_precision": 0.58,
    "cascade_fp_share": 0.42,
    "layer3_share": 0.35,
    "layer1_block_share": 0.15,
    "layer1_precision": 0.95,
    "p99_ms": 22.0,
    "p99_budget_ms": 30.0,
    "fraud_caught_eur_month_before": 4.3e6,
    "fraud_caught_eur_month_after": 7.5e6,
}

# Redis keys (prefix fraud:) and the event stream's names
STREAM_KEY = "fraud:events"
KAFKA_TOPIC = "fraud.events"
FEATURES_GROUP = "features"
DECISION_LOG_GROUP = "decision-log"
CONSUMER_GROUPS = (FEATURES_GROUP, DECISION_LOG_GROUP)
LISTS_KEY_PREFIX = "fraud:lists:"
LISTS_VERSION_KEY = "fraud:lists:version"


def fraud_serving_env() -> dict[str, str]:
    """Fraud-specific switches of the online service (see docs/fraud.md)."""
    return {
        "consumers": os.environ.get("LAKEHOUSE_FRAUD_CONSUMERS", "inline"),
        "kafka_bootstrap": os.environ.get("LAKEHOUSE_KAFKA_BOOTSTRAP", ""),
    }
