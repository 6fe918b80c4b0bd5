"""Every number of the churn case in one place (seed case 1 unless said otherwise)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

CASE = "churn"

# Customer counts per named scale; full is the seed's 15,000 SME customers.
SCALES = {"demo": 2_000, "full": 15_000}
LOOKBACK_WEEKS = 13  # feature windows reach 13 weeks (91 days) back


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and dynamics of the synthetic SaaS world."""

    customers: int = SCALES["demo"]
    years: float = 3.0
    end_date: date = date(2026, 11, 16)  # a Monday: the last day of history is the Sunday before
    seed: int = 7
    monthly_churn_rate: float = 0.042  # seed: 4.2 % monthly
    annual_plan_share: float = 0.35
    key_features: int = 10
    # 1.0 = churners show the behaviour the seed describes; 0.0 = churn is pure noise.
    signal_strength: float = 1.0
    # In the synthetic world a CS contact saves this share of treated churners
    # (seed A/B: 4.1 % -> 2.9 %, i.e. 29 % relative).
    true_contact_effect: float = 0.29

    @classmethod
    def from_env(cls) -> "WorldConfig":
        scale = os.environ.get("LAKEHOUSE_SCALE", "demo")
        customers = int(scale) if scale.isdigit() else SCALES[scale]
        seed = int(os.environ.get("LAKEHOUSE_SEED", cls.seed))
        return cls(customers=customers, seed=seed)

    def with_(self, **changes) -> "WorldConfig":
        return replace(self, **changes)

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=round(self.years * 365))

    @property
    def first_snapshot(self) -> date:
        """First Monday with a full feature lookback (13 weeks after the first week of history)."""
        first_week = self.start_date - timedelta(days=self.start_date.weekday())
        return first_week + timedelta(weeks=LOOKBACK_WEEKS)


@dataclass(frozen=True)
class RiskTier:
    name: str
    min_score: float
    action: str


@dataclass(frozen=True)
class ChurnSettings:
    label_horizon_days: int = 30  # churn = non-renewal within 30 days
    test_months: int = 4  # out-of-time test period
    top_fraction: float = 0.20  # Recall@top20%
    # Go/No-Go gate
    gate_min_auc_pr: float = 0.65
    gate_min_recall_top: float = 0.55
    # Monitoring
    max_score_shift_ks: float = 0.15
    volume_bounds_full_scale: tuple[int, int] = (13_000, 16_000)
    full_scale_customers: int = SCALES["full"]
    min_live_auc_pr: float = 0.60
    scoring_latency_budget_s: float = 120.0  # < 2 minutes for 15,000
    # Risk tiers and the action guide per tier (seed lesson: CS needs a guide per level).
    tiers: tuple[RiskTier, ...] = (
        RiskTier("high", 0.65, "CSM call within 48 h: review usage drop and open tickets, offer an adoption plan"),
        RiskTier("medium", 0.35, "Personalised email + in-app guide on unused key features; CSM follow-up in 2 weeks"),
        RiskTier("low", 0.0, "No action: regular newsletter"),
    )
    top_reasons: int = 3
    explained_tiers: tuple[str, ...] = ("high", "medium")  # tiers whose customers get SHAP reasons
    # A/B test and ROI
    ab_high_risk_threshold: float = 0.65
    ab_outcome_days: int = 90
    ab_enrolment_weeks: int = 13  # the seed's 90-day test: 13 weekly high-risk lists enrol customers
    ab_salt: str = "churn-ab-2026"
    ltv_eur: float = 3_000.0
    model_cost_eur_per_month: float = 8_000.0
    # Model training
    lgbm_params: dict = field(
        default_factory=lambda: {
            "objective": "binary",
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "num_threads": 2,
            "verbosity": -1,
        }
    )
    num_boost_round: int = 600
    early_stopping_rounds: int = 50
    registered_model_name: str = "churn_lightgbm"

    def volume_bounds(self, customers: int) -> tuple[int, int]:
        """The seed's [13,000, 16,000] for 15,000 customers, scaled to the configured base."""
        factor = customers / self.full_scale_customers
        low, high = self.volume_bounds_full_scale
        return round(low * factor), round(high * factor)



SETTINGS = ChurnSettings()

# The seed's own figures, shown beside ours in reports (keys are our metric names).
SEED_MODEL_REFERENCE = {"auc_roc": 0.84, "auc_pr": 0.71, "recall_top20": 0.62}
SEED_AB_REFERENCE = {
    "monthly_rate_treatment": 0.029,
    "monthly_rate_control": 0.041,
    "absolute_reduction": 0.012,
    "relative_reduction": 0.012 / 0.041,
    "retained_per_month": 90.0,
    "value_per_month_eur": 270_000.0,
    "cost_per_month_eur": 8_000.0,
    "roi": (270_000.0 - 8_000.0) / 8_000.0,  # 32.75, quoted as "32x"
}
