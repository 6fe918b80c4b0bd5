"""Production settings of the triage case: one typed object, read by assets, checks, schedules,
serving, demos and benchmarks (see lakehouse/common/settings.py for where values come from).

The defaults are the seed's figures (case 4): 12 categories and their teams, auto-routing above
0.85, alerts below a mean confidence of 0.75 and above 30 % of tickets sent to humans, and the
cost assumptions of its ROI. A helpdesk with other categories, thresholds or costs sets them
in the sources file (`triage.settings`) or in `LAKEHOUSE_TRIAGE_*` variables.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from lakehouse.common.freshness import Deadline
from lakehouse.common.plausibility import Plausibility
from lakehouse.common.promotion import ComparisonSettings
from lakehouse.common.settings import Calendar, CaseSettings, DateRange, Economics, Period, back, parse_duration
from lakehouse.common.sources import Section

# The seed's 12 categories: the five it names and seven more an e-commerce helpdesk has, each with its team.
SEED_TEAMS = {
    "product_return": "returns",
    "delivery_problem": "logistics",
    "billing": "finance",
    "technical_problem": "tech_support",
    "product_question": "product_experts",
    "order_change": "order_desk",
    "refund_status": "finance",
    "account_access": "tech_support",
    "damaged_item": "returns",
    "warranty_claim": "after_sales",
    "promotion_code": "marketing_desk",
    "complaint_feedback": "customer_care",
}


def _checked(period: Period) -> Period:
    if isinstance(period, str):
        parse_duration(period)
    return period


CheckedPeriod = Annotated[Period, AfterValidator(_checked)]


class TrainingSettings(Section):
    """What a training learns from, and its CPU budget.

    By default a training reads every ticket with a validated label known at its cut-off, except the frozen
    hold-out; the newest `validation_share` of them (or the `validation` period, or with `validation_split:
    stratified` the same share of each category) is the gate's validation set, on which the confidence calibration
    and the out-of-scope rule are fitted too.
    """

    # The most recent N validated tickets; None: every validated ticket (seed: 3,000).
    tickets: int | None = None
    # Kept out of training forever, by a stable hash of the ticket id.
    holdout_share: float = Field(0.1, ge=0.0, lt=1.0)
    # Share of the training window held for validation, when `validation` is not set.
    validation_share: float = Field(0.2, gt=0.0, lt=1.0)
    # Which tickets that share is: the newest (arrival time means something: validation looks like what comes
    # next), or drawn from each category alike (the file's order carries no time, e.g. a file sorted by category).
    validation_split: Literal["newest", "stratified"] = "newest"
    # Dates, or a duration back from the cut-off (`1mo`): the validation tickets' creation times.
    validation: CheckedPeriod | None = None
    epochs: float = Field(1.0, gt=0.0)  # passes over the training tickets (fine-tuning body and head together)
    # At most this many optimisation steps: the CPU budget (about 0.45 s a step of 32 tickets at 32 tokens on 2 cores).
    max_steps: int = Field(1_500, ge=1)
    batch_size: int = Field(32, ge=2)
    max_tokens: int = Field(32, ge=8)  # tokens per ticket read in training: what serving reads (`inference.max_tokens`)
    learning_rate: float = Field(5e-5, gt=0.0)  # of body and head, fine-tuned together
    # Inverse regularisation of the logistic heads: the probe's and the one refitted on the fine-tuned body.
    head_c: float = Field(10.0, gt=0.0)
    probe_per_category: int = Field(100, ge=1)  # tickets of each category the linear probe that starts the head reads
    seed: int = 0

    @model_validator(mode="after")
    def _one_validation(self) -> TrainingSettings:
        if self.validation is not None and self.validation_split == "stratified":
            raise ValueError(
                "training.validation (a period) and training.validation_split: stratified both choose the validation "
                "tickets: set one of them"
            )
        return self

    def validation_window(self, as_of: datetime) -> DateRange | None:
        """The validation period as dates, for a training whose cut-off is `as_of` (exclusive)."""
        if self.validation is None or isinstance(self.validation, DateRange):
            return self.validation
        last = (as_of - timedelta(microseconds=1)).date()
        return DateRange.model_construct(start=back(last, self.validation) + timedelta(days=1), end=last)


class OutOfScopeSettings(Section):
    """Tickets that match no known category go to the human queue with reason `out_of_scope`.

    Labels equal to `category` (the helpdesk's own "none of these" label, mapped to this name) are learned as
    examples of what is out of scope. The rule is a threshold on the best known category's probability, fitted on
    the validation set: at most `max_in_scope_rejection` of the validation tickets of known categories fall below
    it; when the validation set holds tickets labelled `category`, the threshold up to that cap that maximises
    validation accuracy (weighted to `expected_share`, when set). It runs when the training labels hold `category`
    (`rule: auto`), always (`on`: a helpdesk whose agents never label "none of these" but expects such tickets) or
    never (`off`).
    """

    category: str = "out_of_scope"
    rule: Literal["auto", "on", "off"] = "auto"
    max_in_scope_rejection: float = Field(0.02, ge=0.0, lt=1.0)
    # Share of tickets expected out of scope in production. When set, the calibration weighs the validation
    # tickets so that those labelled out of scope count for this share (a validation set often holds fewer than
    # live traffic, and precision measured on it is then optimistic). None: the validation set as it is.
    expected_share: float | None = Field(None, gt=0.0, lt=1.0)

    def applies(self, labels: set[str]) -> bool:
        """Whether the rule runs for a training whose labels (train and validation) are `labels`."""
        return self.rule == "on" or (self.rule == "auto" and self.category in labels)


class GateComparison(ComparisonSettings):
    """The challenger's accuracy against the champion's on the frozen hold-out tickets neither learnt from."""

    tolerance: float = Field(0.01, ge=0.0)  # refused only when the whole interval of the gain is below -1 point


class GateSettings(Section):
    """The promotion gate: floors on the challenger's validation figures (the seed's), and the comparison with the
    champion (lakehouse/triage/lifecycle.py)."""

    min_macro_f1: float = 0.75
    min_auto_precision: float = 0.90
    comparison: GateComparison = GateComparison()


class MonitoringSettings(Section):
    min_mean_confidence: float = 0.75  # seed alert
    max_human_validation_rate: float = 0.30  # seed alert (for 12 categories: more categories queue more tickets)
    max_mix_psi: float = 0.2  # predicted category mix vs the training mix
    min_category_recall: float = 0.6
    min_category_support: int = 20  # tickets a category needs in a month for its recall to be judged


class InferenceSettings(Section):
    max_tokens: int = Field(
        32, ge=8
    )  # tokens per ticket read when scoring (subject and first sentences carry the category)
    batch_size: int = Field(64, ge=1)
    quantize: bool = True  # static int8 body (activation scales fixed on sample tickets); False: float32


class TriageEconomics(Economics):
    """The seed's before/after figures and the cost assumptions behind its ROI."""

    tickets_per_month: int = 50_000  # volume the effort is computed at (seed)
    baseline_triage_agents: float = 3.0  # seed: 3 agents did the manual triage
    baseline_triage_minutes: float = 45.0  # seed: 45 min average delay before ML
    baseline_error_rate: float = 0.15  # seed: 15 % wrong team before ML
    human_validation_minutes: float = 0.4  # agent effort to confirm or fix a queued ticket's suggested category
    misroute_rework_minutes: float = 1.0  # effort for a team to bounce a wrongly auto-routed ticket
    queue_wait_minutes: float = 45.0  # a queued ticket waits like a manually triaged one
    agent_hours_per_month: float = 151.7  # 35 h a week
    agent_annual_cost: float = 48_000.0
    system_annual_cost: float = 13_000.0  # hosting, CPU inference, MLOps upkeep share

    @property
    def defaults_used(self) -> list[str]:
        """The figures nobody set (the seed's defaults are in use)."""
        return [name for name in type(self).model_fields if name not in self.model_fields_set]


class TriageCalendar(Calendar):
    """The case's calendar defaults: setting only `start` (or only `timezone`) keeps the other."""

    start: date = date(2026, 1, 1)
    timezone: str = "UTC"


class TriageFreshness(Section):
    routes: Deadline = Deadline(day=2, at="00:00")  # seed: the month's tickets routed by the 2nd


class TriageSettings(CaseSettings):
    case = "triage"

    calendar: TriageCalendar = TriageCalendar()  # monthly partitions from this month
    plausibility: Plausibility = Plausibility()  # bounds a value must keep (lakehouse.common.plausibility)
    teams: dict[str, str] = Field(
        default_factory=lambda: dict(SEED_TEAMS)
    )  # category -> team; unlisted categories are their own team
    confidence_threshold: float = Field(
        0.85, gt=0.0, lt=1.0
    )  # seed: above it a ticket is routed automatically (the floor of the fitted threshold)
    # The auto route's precision goal: each training fits, on its validation tickets, the lowest confidence (never
    # below `confidence_threshold`) above which at least this share of them is right, and routes with it. None: the
    # seed's rule.
    auto_precision_target: float | None = Field(0.95, gt=0.0, le=1.0)
    # The target holds at this one-sided confidence level: the Wilson lower bound of the validation precision meets
    # it, not just the point estimate (a few hundred validation tickets measure a precision to a point or two). None:
    # the point estimate.
    auto_precision_level: float | None = Field(0.95, gt=0.0, lt=1.0)
    phone_region: str = "GB"  # phone numbers written without a country code are read as this region's
    training: TrainingSettings = TrainingSettings()
    out_of_scope: OutOfScopeSettings = OutOfScopeSettings()
    gate: GateSettings = GateSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    inference: InferenceSettings = InferenceSettings()
    evaluation: CheckedPeriod = (
        "3mo"  # the evaluation report's months: dates, or a duration back from the latest routed month
    )
    economics: TriageEconomics = TriageEconomics()
    freshness: TriageFreshness = TriageFreshness()  # SLAs, alerting when missed (lakehouse.common.freshness)
    registered_model_name: str = "triage_classifier"

    def team(self, category: str) -> str:
        return self.teams.get(category, category)

    def evaluation_months(self, routed: list[str]) -> list[str]:
        """The routed months (YYYY-MM) the evaluation report covers."""
        if not routed:
            return []
        if isinstance(self.evaluation, DateRange):
            window = self.evaluation
        else:
            last = date.fromisoformat(max(routed) + "-01")
            following = date(last.year + last.month // 12, last.month % 12 + 1, 1)
            window = DateRange.model_construct(
                start=back(following, self.evaluation), end=following - timedelta(days=1)
            )
        return [m for m in sorted(routed) if window.start <= date.fromisoformat(m + "-01") <= window.end]
