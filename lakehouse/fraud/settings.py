"""Production settings of the fraud case: one typed object, apart from the synthetic world.

Values come from keyword arguments, `LAKEHOUSE_FRAUD_<FIELD>` environment variables (nested
fields joined by `__`, e.g. `LAKEHOUSE_FRAUD_FEATURES__LABEL_DELAY_DAYS=10`), the `settings:`
section of `fraud` in the sources file, then these defaults. The defaults are the seed's
figures (case 3) where the seed gives one, and the demo world's calendar and windows
otherwise. Build a `FraudSettings()` where it is used, so a run sees the current environment.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from lakehouse.common.freshness import Deadline
from lakehouse.common.plausibility import Plausibility
from lakehouse.common.promotion import ComparisonSettings
from lakehouse.common.settings import Calendar, CaseSettings, DateRange, Economics, EvaluationWindows, Period
from lakehouse.common.sources import Section

CASE = "fraud"


def _minutes(*values: float) -> tuple[timedelta, ...]:
    return tuple(timedelta(minutes=v) for v in values)


class FeatureSettings(Section):
    """The feature registry. A model keeps the settings it was trained with and the service
    computes its features from those, so changing them takes effect at the next training."""

    # Exact sliding windows [t - w, t) of the customer, card, device, IP and payee IBAN
    # (seed: velocity over 1, 5 and 15 minutes).
    windows: tuple[timedelta, ...] = _minutes(1, 5, 15, 60, 360, 1440)
    customer_windows: tuple[timedelta, ...] = (timedelta(days=7), timedelta(days=30))  # the customer's longer windows
    merchant_windows: tuple[timedelta, ...] = _minutes(1, 5, 15, 60)  # exact merchant windows (read for layer 3 only)
    # Merchant and category history over whole (UTC) days before the payment's day: activity over
    # the last n days, and fraud counted from labels known at decision time, i.e. over the n days
    # that end `label_delay_days` before it (chargebacks arrive days after the payment).
    history_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = Field(7, ge=0)
    small_amount: float = Field(5.0, gt=0)  # a "small" payment (card testing), in the data's currency
    hour_timezone: str | None = None  # hour of day and weekday in this zone; default the calendar's

    @property
    def reach_days(self) -> int:
        """The days whose features a day's payments enter: its own, the days its longest window reaches into, and
        the days whose history counts it (`history_days` ending `label_delay_days` before them)."""
        longest = max((*self.windows, *self.customer_windows, *self.merchant_windows))
        return 1 + max(math.ceil(longest / timedelta(days=1)), max(self.history_days) + self.label_delay_days)

    @field_validator("windows", "customer_windows", "merchant_windows")
    @classmethod
    def _positive(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if not value or any(w <= timedelta(0) or w.total_seconds() % 1 for w in value):
            raise ValueError(
                "windows are positive whole numbers of seconds (give seconds or an ISO 8601 duration such as PT5M)"
            )
        return tuple(sorted(set(value)))

    @field_validator("history_days")
    @classmethod
    def _days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 1:
            raise ValueError("history_days are whole days >= 1")
        return tuple(sorted(set(value)))


class RuleWeights(Section):
    """Layer-1 rules: each hit adds its weight; the rule score is 1 - prod(1 - weight)."""

    fraudulent_iban: float = 0.95
    suspicious_ip: float = 0.6
    blacklisted_country: float = 0.5
    card_testing: float = 0.7  # >= card_testing_small_tx small payments on the card in 5 minutes
    velocity_burst: float = 0.4  # >= velocity_burst_tx payments of the customer in 1 minute
    new_device_new_country: float = 0.5
    amount_spike: float = 0.35  # amount >= amount_spike_ratio x the customer's mean, with history


class RuleSettings(Section):
    weights: RuleWeights = RuleWeights()
    card_testing_small_tx: int = 3
    velocity_burst_tx: int = 4
    amount_spike_ratio: float = 10.0
    amount_spike_min_history: int = 5
    block_threshold: float = 0.9  # critical rule score: block at layer 1
    baseline_flag_threshold: float = 0.35  # the rules-only baseline flags (review or block) from this score
    # Lists learnt from the labelled training days
    iban_min_frauds: int = 2
    iban_min_share: float = 0.5
    ip_min_frauds: int = 3
    ip_min_share: float = 0.3
    country_min_tx: int = 30
    country_min_rate: float = 0.2
    static_blacklisted_countries: tuple[str, ...] = ()
    # Risky merchant, learnt: the lowest known fraud rate (longest history window, at least
    # `merchant_min_frauds` known frauds) whose training payments reach this precision; the
    # rule's weight is the precision measured there. No such rate: no rule.
    merchant_min_frauds: int = 2
    merchant_min_precision: float = 0.5


class CascadeSettings(Section):
    registered_model_name: str = "fraud_cascade"
    # Layer 3 re-scores the payments whose layer-2 score is at least a cut chosen on the validation
    # window, and always every payment layer 2 alone would flag. The cut is the one, among the shares
    # of traffic `layer3_share_step`, 2 x step, ... up to `layer3_max_share`, whose final score has
    # the best average precision on validation: a wider band where layer 3 pays. `layer3_max_share`
    # is the latency budget (a layer-3 decision costs about twice a layer-2 one; seed: 35 %).
    layer3_max_share: float = Field(0.35, gt=0, le=1)
    layer3_share_step: float = Field(0.05, gt=0, le=1)
    # Training keeps every fraud and at most this many other payments, drawn at random and weighted
    # back (1 / sampling rate), so the layers learn the population's odds; each layer's score is
    # then calibrated on the validation window (Platt scaling), which holds whatever the sampling.
    max_legit_training_rows: int = Field(400_000, ge=1_000)
    # Once the validation window has chosen the rounds (early stopping), the calibration, the band and the
    # thresholds, fit both layers again on training + validation with those rounds: the most recent labels
    # count too, and the choices made on validation carry over. False: the layers learn from training only.
    refit_with_validation: bool = True
    # Thresholds on the final score, chosen on the validation window: the best F-beta among the
    # cuts whose precision reaches `target_precision` (review) or `block_precision` (block).
    # beta 2 weighs recall twice as much as precision: a missed fraud costs more than a review.
    target_precision: float = 0.7
    block_precision: float = 0.9
    threshold_beta: float = 2.0
    lgbm_params: dict = {
        "objective": "binary",
        "learning_rate": 0.08,
        "num_leaves": 31,
        "min_data_in_leaf": 30,
        "feature_fraction": 0.9,
        "lambda_l2": 1.0,
        "num_threads": 1,  # one thread: OpenMP spinning on a busy 2-core machine costs 10x
        "verbosity": -1,
    }
    lgbm_rounds: int = 200
    xgb_params: dict = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "eta": 0.1,
        "max_depth": 6,
        "subsample": 0.9,
        "colsample_bytree": 0.5,
        "tree_method": "hist",
        "nthread": 2,
    }
    xgb_rounds: int = 300
    early_stopping_rounds: int = 30
    seed: int = 0


class GateSettings(Section):
    """The promotion gate on the test window: the seed's floors on recall and precision, and comparisons
    (`comparison`) with the champion (average precision on the test rows after both models' training
    cut-offs) and with the rules-only baseline (recall and precision), each with a bootstrap interval
    over customers (frauds come in per-customer bursts) and a minimum support."""

    min_recall: float = 0.75
    min_precision: float = 0.5
    comparison: ComparisonSettings = ComparisonSettings()


class EvaluationSettings(Section):
    """Figures of the evaluation reports."""

    card_precision_k: int = Field(100, ge=1)  # card precision @ k: share of the day's k riskiest cards with a fraud


class MonitoringSettings(Section):
    max_feature_drift_ks: float = 0.2
    layer3_share_band: tuple[float, float] = (0.05, 0.7)  # around the configured layer-3 share
    max_flag_rate_ratio: float = 3.0  # live flag rate vs the test-window flag rate, either way
    # The day's flag count alerts only when it is this unlikely even at the band's nearer edge (binomial): a few
    # hundred decisions at a 0.2 % rate give 0 or 2 flags as often as 1.
    flag_rate_alpha: float = Field(0.01, gt=0, lt=0.5)
    min_decisions_for_checks: int = 200


class FraudEconomics(Economics):
    """Money figures of the reports, in `currency` (seed: EUR, 180 k EUR/month of system cost)."""

    system_cost_per_month: float = 180_000.0


class SeedReference(Section):
    """The seed's own results, shown beside ours in reports (never used in a computation)."""

    rules_recall: float = 0.70
    rules_precision: float = 0.12
    cascade_recall: float = 0.87
    cascade_precision: float = 0.58
    cascade_fp_share: float = 0.42
    layer3_share: float = 0.35
    layer1_block_share: float = 0.15
    layer1_precision: float = 0.95
    p99_ms: float = 22.0
    p99_budget_ms: float = 30.0
    fraud_caught_per_month_before: float = 4.3e6
    fraud_caught_per_month_after: float = 7.5e6
    currency: str = "EUR"


class ServingSettings(Section):
    """The decision service (its fraud-only switches)."""

    redis_timeout_s: float = 0.015
    redis_failures_to_open: int = 3  # failed reads in a row before the service stops asking Redis
    redis_retry_after_s: float = 0.5  # then skip Redis for this long before trying again
    future_tolerance_s: float = 300.0  # a payment dated further ahead of the service clock is refused
    # Replays of past traffic (demos, benchmarks): the service clock starts at this instant and
    # moves forward with the payments it accepts, each at most `future_tolerance_s` ahead of the
    # latest (replay sparse traffic with a tolerance above its longest gap). Unset in production: the wall clock.
    replay_from: datetime | None = None
    model_poll_s: float = 2.0
    lists_poll_s: float = 5.0
    publish_batch: int = 100  # events per append to the stream (a batch is CPU the event loop does not share)
    stream_maxlen: int = 5_000_000
    kafka_partitions: int = 4
    consumer_batch: int = 200
    decision_log_batch: int = 1000  # events per decision-log read (and Parquet part) at most
    decision_log_wait_s: float = 0.2  # after a smaller read, let events gather this long
    spool_max_bytes: int = 2 * 1024**3  # the on-disk spool of unpublished decisions; beyond it, decisions answer 503
    spool_segment_events: int = 20_000  # events per spool file
    spool_fsync_s: float = 0.05  # group commit: the spool is fsynced at most this long after a write
    window_ttl_s: int = 24 * 3600  # seed: TTL 24 h (each entity's windows keep at least their longest window)
    profile_ttl_s: int = 30 * 24 * 3600
    dedupe_ttl_s: int = 48 * 3600  # transaction ids already applied (idempotent replays)


class FraudCalendar(Calendar):
    """The case's calendar defaults (the demo world's month): setting one field keeps the other."""

    start: date = date(2026, 11, 1)


class FraudWindows(EvaluationWindows):
    """Test: the last 3 days; training: the days before it after 1 warm-up day; validation (which chooses
    the layer-3 band, the calibration and the thresholds): the given period, or when none is given the
    last `validation_share` of those days (at least one), carved from the end of training. Setting some
    of them keeps the defaults of the others."""

    test: Period = "3d"
    validation: Period | None = None
    validation_share: float = Field(0.25, gt=0, lt=1)
    warmup: str | None = "1d"

    def resolve(self, first: date, last: date) -> dict[str, DateRange]:
        if self.validation is not None:
            return super().resolve(first, last)
        before_test = self.model_copy(update={"validation": "1d"}).resolve(first, last)
        span = self.train or DateRange(start=before_test["train"].start, end=before_test["validation"].end)
        days = math.ceil(self.validation_share * span.days)
        validation = DateRange(start=span.end - timedelta(days=days - 1), end=span.end)
        train = self.train and DateRange(start=span.start, end=validation.start - timedelta(days=1))
        return self.model_copy(update={"validation": validation, "train": train}).resolve(first, last)


class FraudFreshness(Section):
    transactions: Deadline = Deadline(at="01:00")  # a day's payments and labels in the lake by 01:00 the next day
    decision_log: Deadline = Deadline(at="01:00")  # seed: a day's decision log by 01:00 the next day


class FraudSettings(CaseSettings):
    case: ClassVar[str] = CASE

    calendar: FraudCalendar = FraudCalendar()
    plausibility: Plausibility = Plausibility()  # bounds a value must keep (lakehouse.common.plausibility)
    windows: FraudWindows = FraudWindows()
    channels: tuple[str, ...] = ("card_present", "ecommerce", "transfer")
    ecommerce_channels: tuple[str, ...] = ("ecommerce",)
    transfer_channels: tuple[str, ...] = ("transfer",)  # their payee IBAN is an entity (mule accounts)
    features: FeatureSettings = FeatureSettings()
    rules: RuleSettings = RuleSettings()
    cascade: CascadeSettings = CascadeSettings()
    gate: GateSettings = GateSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    economics: FraudEconomics = FraudEconomics()
    reference: SeedReference = SeedReference()
    serving: ServingSettings = ServingSettings()
    freshness: FraudFreshness = FraudFreshness()  # SLAs, alerting when missed (lakehouse.common.freshness)
    consumers: Literal["inline", "off"] = "inline"  # off: run `python -m lakehouse.fraud.consumer` beside the service
    kafka_bootstrap: str = ""  # host:port: the event stream on Kafka instead of the Redis Stream

    @property
    def hour_timezone(self) -> str:
        return self.features.hour_timezone or self.calendar.timezone

    def economics_note(self) -> str:
        """Whether anyone set the money figures (reports say so)."""
        return "set" if self.economics.model_fields_set else f"defaults (the seed's figures, {self.economics.currency})"
