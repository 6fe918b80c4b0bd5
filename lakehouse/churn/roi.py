"""A/B test analysis and ROI of the churn model (pure functions, Polars in/out).

Seed case study (B2B SaaS, 90-day test)
---------------------------------------
High-risk customers (churn score > 0.65) are split 50/50 by a deterministic
hash into *treatment* (contacted by Customer Success) and *control* (not
contacted).  Seed figures: monthly churn 2.9 % treatment vs 4.1 % control,
absolute reduction 1.2 points, 90 retained customers/month, value = retained x
LTV 3,000 EUR = 270,000 EUR/month, model cost 8,000 EUR/month,
ROI = (value - cost) / cost = (270,000 - 8,000) / 8,000 = 32.75 ("32x"). Money here is in the
case's currency (settings: `economics`), whatever it is.

Statistical conventions (one approach, used everywhere in this module)
---------------------------------------------------------------------
The statistics are statsmodels' (``statsmodels.stats.proportion``); this module only
chooses the methods and signs.

* Outcomes are observed over the 90-day test window: ``p_t``, ``p_c`` are the
  90-day churn proportions of each arm.
* Monthly rates use the constant-hazard conversion
  ``m(p) = 1 - (1 - p) ** (1/3)`` (three monthly periods in 90 days).
* Effects are signed so that a *positive* number means treatment churns less:
  ``absolute_reduction = m(p_c) - m(p_t)`` (monthly, as a proportion, 0.012 is
  1.2 points); ``relative_reduction = absolute_reduction / m(p_c)``.
* Hypothesis test: ``proportions_ztest([x_c, x_t], [n_c, n_t])``, the two-sided
  two-proportion z-test on the 90-day proportions with the pooled standard error,
  ``z = (p_c - p_t) / sqrt(pbar (1 - pbar) (1/n_t + 1/n_c))``; when nobody or
  everybody churned (``pbar`` is 0 or 1) there is no evidence of a difference:
  ``z = 0``, ``p = 1``.
* Confidence intervals (``confidence`` level, default 95 %), Newcombe's hybrid score
  interval, built from each arm's Wilson interval
  (``proportion_confint(method="wilson")``):
  - ``ci_low_90d`` / ``ci_high_90d``: the 90-day difference ``p_c - p_t``,
    ``confint_proportions_2indep(x_c, n_c, x_t, n_t, method="newcomb")``.
  - ``ci_low`` / ``ci_high``: the *monthly* absolute reduction ``m(p_c) - m(p_t)``,
    by the same construction (Zou and Donner's MOVER) on the monthly scale: each
    arm's Wilson limits are mapped through the monotone ``m``, then
    ``low = d - sqrt((m_c - m(l_c))^2 + (m(u_t) - m_t)^2)`` and
    ``high = d + sqrt((m(u_c) - m_c)^2 + (m_t - m(l_t))^2)``.
  Neither interval is symmetric; each contains its point estimate and stays within
  the possible range.
* Sample size: ``samplesize_proportions_2indep_onetail``, the normal-approximation
  (Fleiss, no continuity correction) size per arm to detect the observed 90-day
  difference at two-sided ``alpha = 1 - confidence`` and the given power::

      n = (z_{1-a/2} sqrt(2 pbar (1-pbar)) + z_{power} sqrt(p_t(1-p_t) + p_c(1-p_c)))^2
          / (p_c - p_t)^2,          pbar = (p_t + p_c) / 2,

  rounded up; ``None`` when the observed difference is exactly zero.  (statsmodels'
  ``NormalIndPower`` on Cohen's h would give a slightly different figure, 424 instead
  of 435 per arm for 5 % vs 10 %; this module does not use it.)
* Economics: the customers contacted each month are the treatment arm, so
  ``retained_per_month = absolute_reduction * n_treatment``,
  ``value_per_month = retained_per_month * ltv`` and
  ``roi = (value - cost) / cost``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from lakehouse.common import display

TREATMENT = "treatment"
CONTROL = "control"
ARMS = (TREATMENT, CONTROL)


# --------------------------------------------------------------------------
# Deterministic hashing
# --------------------------------------------------------------------------
def _stable_unit(salt: str, customer_id: Any) -> float:
    """Uniform [0, 1) from blake2b of ``f"{salt}:{customer_id}"`` (53 bits)."""
    digest = hashlib.blake2b(f"{salt}:{customer_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def hash_uniform(customer_ids: pl.Series, salt: str) -> pl.Series:
    """Stable per-customer uniform draws in [0, 1).

    Uses ``hashlib.blake2b`` of ``f"{salt}:{customer_id}"`` (never Python's
    randomised ``hash()``), so the value depends only on ``(salt, id)``: it is
    identical across processes, machines and row orders.
    """
    if customer_ids.null_count():
        raise ValueError("customer_ids contains nulls; every customer needs an id to be hashed")
    values = [_stable_unit(salt, cid) for cid in customer_ids.to_list()]
    return pl.Series("hash_uniform", values, dtype=pl.Float64)


def assign_arms(customer_ids: pl.Series, salt: str) -> pl.Series:
    """Deterministic ~50/50 split: ``"treatment"`` if hash_uniform < 0.5 else ``"control"``."""
    u = hash_uniform(customer_ids, salt)
    arms = [TREATMENT if x < 0.5 else CONTROL for x in u.to_list()]
    return pl.Series("arm", arms, dtype=pl.String)


# --------------------------------------------------------------------------
# Synthetic world: the intervention
# --------------------------------------------------------------------------
def enrol_cohort(scored: pl.DataFrame, *, threshold: float, first_week, weeks: int) -> pl.DataFrame:
    """Customers flagged high-risk (score > threshold) on any weekly list of the enrolment
    window, each enrolled at their first flag with the 90-day outcome that follows it."""
    last_week = first_week + timedelta(weeks=weeks - 1)
    flagged = scored.filter(
        (pl.col("snapshot_date") >= first_week) & (pl.col("snapshot_date") <= last_week) & (pl.col("score") > threshold)
    )
    return (
        flagged.sort("snapshot_date")
        .unique("customer_id", keep="first", maintain_order=True)
        .select("customer_id", "snapshot_date", "score", "churned_90d")
    )


def simulate_contact(outcomes: pl.DataFrame, true_relative_effect: float, salt: str) -> pl.DataFrame:
    """Apply Customer Success contact to the treatment arm of a synthetic world.

    ``outcomes`` has ``customer_id``, ``arm`` and ``churned_90d`` (what happened
    *without* contact).  A treatment customer who churned is saved
    (``churned_90d -> False``) when
    ``hash_uniform(customer_id, salt + ":contact") < true_relative_effect``, so
    in expectation the treatment churn rate becomes
    ``p * (1 - true_relative_effect)``.  Control rows, and treatment rows that
    did not churn, are unchanged; other columns are passed through.
    """
    _require_columns(outcomes, ("customer_id", "arm", "churned_90d"), "simulate_contact")
    if not 0.0 <= true_relative_effect <= 1.0:
        raise ValueError(f"true_relative_effect must be in [0, 1], got {true_relative_effect}")
    _check_arm_labels(outcomes)
    u = hash_uniform(outcomes["customer_id"], f"{salt}:contact")
    saved = (pl.col("arm") == TREATMENT) & pl.col("churned_90d") & (pl.col("_u") < true_relative_effect)
    return (
        outcomes.with_columns(u.alias("_u"))
        .with_columns(pl.when(saved).then(False).otherwise(pl.col("churned_90d")).alias("churned_90d"))
        .drop("_u")
    )


# --------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class AbTestResult:
    """Result of :func:`analyse_ab_test` (see module docstring for formulas).

    Rates and reductions are proportions (0.012 == 1.2 points).  ``ci_low`` /
    ``ci_high`` bound the monthly ``absolute_reduction``; ``ci_low_90d`` /
    ``ci_high_90d`` bound ``absolute_reduction_90d`` (both Newcombe, Wilson limits).
    """

    n_treatment: int
    n_control: int
    churned_treatment: int
    churned_control: int
    churn_rate_treatment: float  # 90-day
    churn_rate_control: float  # 90-day
    monthly_rate_treatment: float
    monthly_rate_control: float
    absolute_reduction: float  # monthly, control - treatment
    relative_reduction: float  # absolute_reduction / monthly_rate_control
    ci_low: float  # monthly absolute reduction, Newcombe on the monthly scale
    ci_high: float
    z_stat: float  # (p_c - p_t) / pooled SE, 90-day
    p_value: float  # two-sided
    required_n_per_arm: int | None
    retained_per_month: float
    value_per_month: float
    cost_per_month: float
    roi: float
    absolute_reduction_90d: float  # p_c - p_t
    ci_low_90d: float  # Newcombe
    ci_high_90d: float
    confidence: float
    power: float
    ltv: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monthly_rate(p_90d: float) -> float:
    """Constant-hazard conversion of a 90-day churn proportion to a monthly one."""
    if not 0.0 <= p_90d <= 1.0:
        raise ValueError(f"a churn proportion must be in [0, 1], got {p_90d}")
    return 1.0 - (1.0 - p_90d) ** (1.0 / 3.0)


def two_proportion_ztest(x_t: int, n_t: int, x_c: int, n_c: int) -> tuple[float, float]:
    """Two-sided pooled two-proportion z-test (statsmodels ``proportions_ztest``); ``(z, p_value)``.

    ``z = (p_c - p_t) / sqrt(pbar (1 - pbar) (1/n_t + 1/n_c))`` with
    ``pbar = (x_t + x_c) / (n_t + n_c)``; positive when treatment churns less.
    """
    _check_counts(x_t, n_t, TREATMENT)
    _check_counts(x_c, n_c, CONTROL)
    if x_t + x_c in (0, n_t + n_c):  # pbar is 0 or 1: both arms identical, no evidence of a difference
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportions_ztest

    z, p_value = proportions_ztest([x_c, x_t], [n_c, n_t])
    return float(z), float(p_value)


def required_sample_size_per_arm(p_t: float, p_c: float, *, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Per-arm sample size to detect ``p_c - p_t`` (two-sided ``alpha``, ``power``), no continuity correction.

    statsmodels ``samplesize_proportions_2indep_onetail`` (the Fleiss formula of the module
    docstring). Returns ``None`` when ``p_t == p_c`` (no finite sample detects a null effect).
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    if p_c == p_t:
        return None
    from statsmodels.stats.proportion import samplesize_proportions_2indep_onetail

    n = float(samplesize_proportions_2indep_onetail(p_c - p_t, p_t, power, alpha=alpha, alternative="two-sided"))
    # Round before ceil so float noise (e.g. 434.0000000001) does not add a customer.
    return int(math.ceil(round(n, 9)))


def wilson_interval(x: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``x / n`` (statsmodels ``proportion_confint``)."""
    _check_counts(x, n, "wilson_interval")
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(x, n, alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


def newcombe_interval_monthly(x_t: int, n_t: int, x_c: int, n_c: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's construction (MOVER) for the monthly difference ``m(p_c) - m(p_t)``.

    Each arm's Wilson limits are exact on the monthly scale once mapped through the monotone
    ``m``; they are combined as Newcombe combines them for a plain difference.
    """
    m_t, m_c = monthly_rate(x_t / n_t), monthly_rate(x_c / n_c)
    low_t, high_t = (monthly_rate(v) for v in wilson_interval(x_t, n_t, confidence))
    low_c, high_c = (monthly_rate(v) for v in wilson_interval(x_c, n_c, confidence))
    d = m_c - m_t
    return d - math.hypot(m_c - low_c, high_t - m_t), d + math.hypot(high_c - m_c, m_t - low_t)


def roi_economics(
    absolute_reduction_monthly: float,
    n_contacted: int,
    *,
    ltv: float,
    model_cost_per_month: float,
) -> tuple[float, float, float]:
    """``(retained_per_month, value_per_month, roi)``.

    retained = monthly absolute reduction x customers contacted; value =
    retained x LTV; ROI = (value - cost) / cost.  Seed: 0.012 x 7,500 = 90,
    90 x 3,000 = 270,000 EUR, (270,000 - 8,000) / 8,000 = 32.75.
    """
    if model_cost_per_month <= 0:
        raise ValueError(f"model_cost_per_month must be > 0 for an ROI, got {model_cost_per_month}")
    retained = absolute_reduction_monthly * n_contacted
    value = retained * ltv
    roi = (value - model_cost_per_month) / model_cost_per_month
    return retained, value, roi


def analyse_ab_test(
    outcomes: pl.DataFrame,
    *,
    ltv: float,
    model_cost_per_month: float,
    confidence: float = 0.95,
    power: float = 0.8,
) -> AbTestResult:
    """Analyse a churn A/B test.

    ``outcomes`` has ``arm`` ("treatment"/"control") and ``churned_90d``
    (bool).  Raises ``ValueError`` if a column is missing, an arm label is
    unknown, ``churned_90d`` has nulls, or an arm is empty.
    """
    _require_columns(outcomes, ("arm", "churned_90d"), "analyse_ab_test")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    _check_arm_labels(outcomes)
    if outcomes["churned_90d"].null_count():
        raise ValueError("churned_90d contains nulls; every customer needs an observed outcome")

    counts = (
        outcomes.select(pl.col("arm"), pl.col("churned_90d").cast(pl.Boolean))
        .group_by("arm")
        .agg(pl.len().alias("n"), pl.col("churned_90d").sum().alias("churned"))
    )
    by_arm = {row["arm"]: (int(row["n"]), int(row["churned"])) for row in counts.iter_rows(named=True)}
    empty = [arm for arm in ARMS if by_arm.get(arm, (0, 0))[0] == 0]
    if empty:
        raise ValueError(
            f"A/B test arm(s) {empty} have no customers; need both 'treatment' and 'control' "
            f"(got counts { ({a: by_arm.get(a, (0, 0))[0] for a in ARMS}) })"
        )
    n_t, x_t = by_arm[TREATMENT]
    n_c, x_c = by_arm[CONTROL]
    p_t, p_c = x_t / n_t, x_c / n_c
    m_t, m_c = monthly_rate(p_t), monthly_rate(p_c)
    abs_red = m_c - m_t
    rel_red = abs_red / m_c if m_c > 0 else math.nan

    from statsmodels.stats.proportion import confint_proportions_2indep

    diff_90 = p_c - p_t
    ci_low_90, ci_high_90 = (
        float(v) for v in confint_proportions_2indep(x_c, n_c, x_t, n_t, method="newcomb", alpha=1.0 - confidence)
    )
    ci_low, ci_high = newcombe_interval_monthly(x_t, n_t, x_c, n_c, confidence)
    z, p_value = two_proportion_ztest(x_t, n_t, x_c, n_c)
    req_n = required_sample_size_per_arm(p_t, p_c, alpha=1.0 - confidence, power=power)
    retained, value, roi = roi_economics(abs_red, n_t, ltv=ltv, model_cost_per_month=model_cost_per_month)
    return AbTestResult(
        n_treatment=n_t,
        n_control=n_c,
        churned_treatment=x_t,
        churned_control=x_c,
        churn_rate_treatment=p_t,
        churn_rate_control=p_c,
        monthly_rate_treatment=m_t,
        monthly_rate_control=m_c,
        absolute_reduction=abs_red,
        relative_reduction=rel_red,
        ci_low=ci_low,
        ci_high=ci_high,
        z_stat=z,
        p_value=p_value,
        required_n_per_arm=req_n,
        retained_per_month=retained,
        value_per_month=value,
        cost_per_month=float(model_cost_per_month),
        roi=roi,
        absolute_reduction_90d=diff_90,
        ci_low_90d=ci_low_90,
        ci_high_90d=ci_high_90,
        confidence=confidence,
        power=power,
        ltv=float(ltv),
    )


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
def _pt(x: float) -> str:
    return f"{100 * x:.2f} pt"


def _num(x: float) -> str:
    return f"{x:,.1f}"


def _int(x: Any) -> str:
    return display.count(None if x is None else int(x))


def _pvalue(x: float) -> str:
    return f"{x:.3g}" if x >= 1e-4 else f"{x:.2e}"


def _rate(x: float) -> str:
    return display.pct(x, digits=2)


# (field name, label, formatter) rows of the report, in display order.
_REPORT_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("n_treatment", "Customers, treatment", _int),
    ("n_control", "Customers, control", _int),
    ("churn_rate_treatment", "90-day churn, treatment", _rate),
    ("churn_rate_control", "90-day churn, control", _rate),
    ("monthly_rate_treatment", "Monthly churn, treatment", _rate),
    ("monthly_rate_control", "Monthly churn, control", _rate),
    ("absolute_reduction", "Absolute reduction (monthly)", _pt),
    ("relative_reduction", "Relative reduction (monthly)", _rate),
    ("ci_monthly", "CI of monthly reduction (Newcombe)", None),
    ("absolute_reduction_90d", "Absolute reduction (90-day)", _pt),
    ("ci_90d", "CI of 90-day reduction (Newcombe)", None),
    ("z_stat", "z (pooled two-proportion test)", lambda x: f"{x:.3f}"),
    ("p_value", "p-value (two-sided)", _pvalue),
    ("required_n_per_arm", "Required n per arm", _int),
    ("retained_per_month", "Retained customers / month", _num),
    ("value_per_month", "Value / month", display.money),
    ("cost_per_month", "Model cost / month", display.money),
    ("roi", "ROI (value - cost) / cost", display.times),
)


def report_table(
    result: AbTestResult, currency: str, seed_reference: Mapping[str, Any] | None = None, seed_currency: str = "EUR"
) -> pl.DataFrame:
    """``metric | ours | seed``, formatted (money in our currency, the seed's in its own).

    ``seed_reference`` maps :class:`AbTestResult` field names (see
    :data:`lakehouse.churn.settings.SEED_AB_REFERENCE`) to the seed's figures; missing ones show as an em dash.
    """
    seed = dict(seed_reference or {})
    level = f"{100 * result.confidence:g}%"
    rows = []
    for field, label, fmt in _REPORT_ROWS:
        if field == "ci_monthly":
            ours, label = f"[{_pt(result.ci_low)}, {_pt(result.ci_high)}]", f"{level} {label}"
        elif field == "ci_90d":
            ours, label = f"[{_pt(result.ci_low_90d)}, {_pt(result.ci_high_90d)}]", f"{level} {label}"
        elif fmt is display.money:
            ours = display.money(getattr(result, field), currency)
        else:
            ours = fmt(getattr(result, field))
        ref = seed.get(field)
        if ref is None:
            theirs = "—"
        elif isinstance(ref, str):
            theirs = ref
        else:
            theirs = (
                display.money(ref, seed_currency) if fmt is display.money else fmt(ref) if fmt is not None else str(ref)
            )
        rows.append({"metric": label, "ours": ours, "seed": theirs})
    return pl.DataFrame(rows)


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------
def plot_ab_test(result: AbTestResult, path: str | Path, currency: str) -> Path:
    """PNG bar chart of monthly churn per arm with per-arm Wilson CIs; returns ``path``.

    The Wilson interval is computed on the 90-day proportion and mapped through
    the (monotone) monthly transform, so it is exact on the monthly scale.
    Uses the object-oriented Agg canvas: no pyplot global state, no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arms = [
        (
            "Treatment (contacted)",
            result.churned_treatment,
            result.n_treatment,
            result.monthly_rate_treatment,
            "#2a9d8f",
        ),
        ("Control", result.churned_control, result.n_control, result.monthly_rate_control, "#e76f51"),
    ]
    labels, heights, lower, upper, colours = [], [], [], [], []
    for label, x, n, m, colour in arms:
        lo, hi = wilson_interval(x, n, result.confidence)
        m_lo, m_hi = monthly_rate(lo), monthly_rate(hi)
        labels.append(label)
        heights.append(100 * m)
        lower.append(100 * max(0.0, m - m_lo))
        upper.append(100 * max(0.0, m_hi - m))
        colours.append(colour)

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(labels, heights, yerr=[lower, upper], capsize=8, color=colours)
    for i, h in enumerate(heights):
        ax.text(i, h / 2, f"{h:.2f}%", ha="center", va="center", color="white", fontsize=12, fontweight="bold")
    ax.set_ylabel("Monthly churn rate (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"Churn A/B test: -{100 * result.absolute_reduction:.2f} pt/month, "
        f"p={_pvalue(result.p_value)}\nROI {result.roi:.1f}x "
        f"({display.money(result.value_per_month, currency)} value vs "
        f"{display.money(result.cost_per_month, currency)} cost / month)",
        fontsize=10,
    )
    ax.text(
        0.99,
        0.01,
        f"error bars: {100 * result.confidence:g}% Wilson CI per arm",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        color="grey",
    )
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------
def _require_columns(df: pl.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; got {df.columns}")


def _check_arm_labels(df: pl.DataFrame) -> None:
    labels = set(df["arm"].unique().to_list())
    unknown = labels - set(ARMS)
    if unknown:
        raise ValueError(f"arm must be 'treatment' or 'control'; found {sorted(map(str, unknown))}")


def _check_counts(x: int, n: int, where: str) -> None:
    if n <= 0:
        raise ValueError(f"{where}: arm is empty (n={n})")
    if not 0 <= x <= n:
        raise ValueError(f"{where}: churned count {x} outside [0, {n}]")
