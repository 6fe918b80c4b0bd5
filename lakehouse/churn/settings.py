"""The churn case's production settings (seed case 1 unless said otherwise).

Values come from `LAKEHOUSE_CHURN_*` environment variables, then the `churn.settings` section
of the sources file, then these defaults (lakehouse/common/settings.py). Nothing here reads
the synthetic world.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from lakehouse.common.freshness import Deadline
from lakehouse.common.plausibility import Plausibility
from lakehouse.common.promotion import ComparisonSettings
from lakehouse.common.settings import Calendar, CaseSettings, Economics, EvaluationWindows, Section

CASE = "churn"


class RiskTier(Section):
    name: str
    min_score: float
    action: str


class ChurnEconomics(Economics):
    ltv: float = 3_000.0  # seed: average customer lifetime value
    model_cost_per_month: float = 8_000.0  # seed: compute + maintenance


class AbTest(Section):
    high_risk_threshold: float = 0.65  # seed: customers scored above 0.65 enter the test
    outcome_days: int = 90  # seed: a 90-day test
    enrolment_weeks: int = 13  # 13 weekly high-risk lists enrol customers over the 90 days
    salt: str = "churn-ab-2026"  # the stable hash that splits contacted and control
    # Share of contacted churners a contact saves, when outcomes are simulated (a world without a
    # real Customer Success team); 0 when the outcomes are real.
    simulated_contact_effect: float = 0.0


class Vocabulary(Section):
    """The user's words for tiers, sizes, plans and ticket categories, in the order that ranks them."""

    tiers: tuple[str, ...] = ("basic", "pro", "enterprise")  # lowest first: tier_rank 0, 1, 2
    sizes: tuple[str, ...] = ("micro", "small", "medium")  # smallest first: size_rank
    annual_plans: tuple[str, ...] = ("annual",)  # plans renewed once a year
    incident_categories: tuple[str, ...] = ("bug", "outage")  # tickets counted as incidents


class Gate(Section):
    """The Go/No-Go gate: the seed's PoC floors on the challenger's out-of-time test period, and no worse
    than the champion beyond noise on the test snapshots after both models' training cut-offs."""

    min_auc_pr: float = 0.65  # seed PoC threshold: AUC-PR above it
    min_recall_top: float = 0.55  # seed PoC threshold: Recall@top20% above it
    # Interval level, tolerance (AUC-PR points), bootstrap resamples over customers, churned customers needed to decide
    comparison: ComparisonSettings = ComparisonSettings()


class FeatureDrift(Section):
    """Drift of the model's inputs in the scored week, feature by feature (two-sample Kolmogorov-Smirnov): against
    the champion's reference weeks (the last weeks of its test period, stored at training), or with no champion yet
    against the weeks before. A feature alerts when its distribution moved by more than `max_ks` (the largest gap
    between the two distributions: an effect size, whatever the number of customers) and the move is beyond noise
    (the test's p-value under `alpha`: on a base of a few hundred customers a gap of 0.2 can be chance)."""

    max_ks: float = Field(0.2, gt=0, lt=1)
    alpha: float = Field(0.001, gt=0, lt=0.5)
    reference_weeks: int = Field(4, ge=1)  # weekly snapshots in a reference


class UsageVolume(Section):
    """The raw usage of the latest complete week (the 7 days before the scored Monday) against the weeks before it,
    counted in active customer-days (rows of `usage_daily`: a customer's day with usage). The week alerts when its
    count is under `min_ratio` times the trailing weeks' mean (an effect size: a drop the business would act on) and
    that low a count is beyond chance (exact conditional Poisson test, one-sided, p under `alpha`: a base of a few
    dozen customers halves by chance)."""

    min_ratio: float = Field(0.7, gt=0, lt=1)
    alpha: float = Field(0.001, gt=0, lt=0.5)
    trailing_weeks: int = Field(8, ge=1)  # complete weeks before the scored one that set the expected volume
    min_weeks: int = Field(4, ge=1)  # fewer complete weeks of history: nothing to compare, the check passes


class ChurnCalendar(Calendar):
    """The case's calendar defaults: setting only `start` (or only `timezone`) keeps the other."""

    start: date = date(2023, 1, 2)
    timezone: str = "Europe/Paris"


class ChurnFreshness(Section):
    scores: Deadline = Deadline(weekday=0, at="08:00")  # seed: this Monday's scores by Monday morning
    crm_push: Deadline = Deadline(weekday=0, at="15:00")  # seed: the CRM import on Monday afternoon


class ChurnSettings(CaseSettings):
    case = CASE

    calendar: ChurnCalendar = ChurnCalendar()
    plausibility: Plausibility = Plausibility()  # bounds a value must keep (lakehouse.common.plausibility)
    # Out-of-time evaluation: the last 4 months of matured snapshots are the test period, the
    # 2 months before them the early-stopping period, 30-day gaps so no label window reaches
    # into the next period.
    evaluation: EvaluationWindows = EvaluationWindows(test="4mo", validation="2mo", gap="30d")
    label_days: int = 30  # seed: churn = non-renewal within the next 30 days
    lookback_weeks: int = 13  # feature windows reach 13 weeks back
    key_features: int = 10  # bits of usage_daily.key_feature_mask
    vocabulary: Vocabulary = Vocabulary()
    top_fraction: float = 0.20  # Recall@top20%
    gate: Gate = Gate()
    # Monitoring (seed alerts)
    max_score_shift_ks: float = 0.15
    feature_drift: FeatureDrift = FeatureDrift()  # the model's inputs, beside its scores
    usage_volume: UsageVolume = UsageVolume()  # the raw usage of the week, before any feature window
    volume_bounds: tuple[int, int] = (13_000, 16_000)  # seed: for 15,000 customers
    volume_bounds_base: int = 15_000
    # The customer base the volume check expects each week; None: last week's scored volume.
    customer_base: int | None = None
    min_live_auc_pr: float = 0.60
    scoring_latency_budget_s: float = 120.0  # seed: < 2 minutes for 15,000
    # Risk tiers and the action guide per tier (seed lesson: CS needs a guide per level).
    tiers: tuple[RiskTier, ...] = (
        RiskTier(
            name="high",
            min_score=0.65,
            action="CSM call within 48 h: review usage drop and open tickets, offer an adoption plan",
        ),
        RiskTier(
            name="medium",
            min_score=0.35,
            action="Personalised email + in-app guide on unused key features; CSM follow-up in 2 weeks",
        ),
        RiskTier(name="low", min_score=0.0, action="No action: regular newsletter"),
    )
    top_reasons: int = 3
    explained_tiers: tuple[str, ...] = ("high", "medium")  # tiers whose customers get SHAP reasons
    ab: AbTest = AbTest()
    economics: ChurnEconomics = ChurnEconomics()
    freshness: ChurnFreshness = ChurnFreshness()  # SLAs, alerting when missed (lakehouse.common.freshness)
    # Model training
    lgbm_params: dict = Field(
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
    importance_sample_rows: int = Field(5_000, ge=100)  # test rows the model's SHAP importance is averaged over
    registered_model_name: str = "churn_lightgbm"

    def bounds_for(self, base: int) -> tuple[int, int]:
        """The seed's volume bounds scaled to a customer base of `base`."""
        low, high = self.volume_bounds
        return round(low * base / self.volume_bounds_base), round(high * base / self.volume_bounds_base)

    @property
    def economics_are_defaults(self) -> bool:
        return "economics" not in self.model_fields_set

    def dbt_vars(self) -> dict:
        """What the feature SQL reads from these settings (passed as dbt --vars on every build)."""
        v = self.vocabulary
        return {
            "churn_label_days": self.label_days,
            "churn_outcome_days": self.ab.outcome_days,
            "churn_lookback_weeks": self.lookback_weeks,
            "churn_key_features": self.key_features,
            "churn_tiers": list(v.tiers),
            "churn_sizes": list(v.sizes),
            "churn_annual_plans": list(v.annual_plans),
            "churn_incident_categories": list(v.incident_categories),
        }


# The seed's own figures, shown beside ours in reports (keys are our metric names).
SEED_MODEL_REFERENCE = {"auc_roc": 0.84, "auc_pr": 0.71, "recall_top20": 0.62}
SEED_AB_REFERENCE = {
    "monthly_rate_treatment": 0.029,
    "monthly_rate_control": 0.041,
    "absolute_reduction": 0.012,
    "relative_reduction": 0.012 / 0.041,
    "retained_per_month": 90.0,
    "value_per_month": 270_000.0,  # EUR
    "cost_per_month": 8_000.0,  # EUR
    "roi": (270_000.0 - 8_000.0) / 8_000.0,  # 32.75, quoted as "32x"
}
