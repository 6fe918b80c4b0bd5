"""A synthetic B2B SaaS world whose churn follows the signals the seed names.

Every customer has a latent engagement level and a key-feature activation habit. Before a
renewal, some customers start to disengage (more likely with low activation, a small
company, a basic tier or a short tenure): over the following weeks their usage decays,
they open more tickets, rate support worse and pay later. At the renewal date a
disengaged customer churns with high probability; others churn rarely (noise). The
strength of these signals is a setting, so a world with no signal exists for tests.

The simulation steps one day at a time over all customers with NumPy and returns the raw
tables (see `schemas.py`); the same seed gives the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Customer counts per named scale; full is the seed's 15,000 SME customers.
SCALES = {"demo": 2_000, "full": 15_000}
LOOKBACK_WEEKS = 13  # the features' window: the first snapshot worth scoring is this many weeks in


class WorldConfig(BaseSettings):
    """Sizes and dynamics of the synthetic SaaS world (LAKEHOUSE_SCALE: demo, full or a count; LAKEHOUSE_SEED)."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True)

    customers: int = Field(SCALES["demo"], validation_alias=AliasChoices("customers", "LAKEHOUSE_SCALE"))
    years: float = 3.0
    end_date: date = date(2026, 11, 16)  # a Monday: the last day of history is the Sunday before
    seed: int = Field(7, validation_alias=AliasChoices("seed", "LAKEHOUSE_SEED"))
    monthly_churn_rate: float = 0.042  # seed: 4.2 % monthly
    annual_plan_share: float = 0.35
    key_features: int = 10
    # 1.0 = churners show the behaviour the seed describes; 0.0 = churn is pure noise.
    signal_strength: float = 1.0
    # In the synthetic world a CS contact saves this share of treated churners
    # (seed A/B: 4.1 % -> 2.9 %, i.e. 29 % relative).
    true_contact_effect: float = 0.29

    @field_validator("customers", mode="before")
    @classmethod
    def _scale(cls, value):
        if isinstance(value, str) and not value.isdigit():
            if value not in SCALES:
                raise ValueError(f"scale {value!r}: use {', '.join(SCALES)} or a customer count")
            return SCALES[value]
        return value

    def with_(self, **changes) -> WorldConfig:
        return self.model_copy(update=changes)

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=round(self.years * 365))

    @property
    def first_snapshot(self) -> date:
        """First Monday with a full feature lookback (13 weeks after the first week of history)."""
        first_week = self.start_date - timedelta(days=self.start_date.weekday())
        return first_week + timedelta(weeks=LOOKBACK_WEEKS)


SECTORS = ("retail", "manufacturing", "services", "health", "construction", "logistics", "hospitality", "tech")
SIZES = ("micro", "small", "medium")
TIERS = ("basic", "pro", "enterprise")
TICKET_CATEGORIES = ("bug", "billing", "how_to", "feature_request", "outage", "account")

_MONTHLY_ONSET_HAZARD = 0.0022  # daily, calibrated to ~4.2 % monthly churn overall
_ANNUAL_ONSET_HAZARD = 0.022  # daily, only in the 75..30 days before an annual renewal
_CHURN_IF_DISENGAGED = 0.85
_MIN_LEAD_DAYS = 30  # a customer decides to leave at least this long before the renewal
_NOISE_CHURN = {"monthly": 0.003, "annual": 0.03}
_ANNUAL_DISCOUNT = 0.85


@dataclass
class _Customers:
    n: int
    signup: np.ndarray  # day index (negative = before the simulated window)
    annual: np.ndarray
    tier: np.ndarray
    size: np.ndarray
    employees: np.ndarray
    sector: np.ndarray
    mrr: np.ndarray
    engagement: np.ndarray
    activation: np.ndarray
    ticket_rate: np.ndarray
    pay_delay: np.ndarray
    risk: np.ndarray


def _add_periods(days: np.ndarray, annual: np.ndarray, start: date) -> np.ndarray:
    """Next renewal: +1 calendar month (monthly plan) or +1 year, day clipped to month end.

    The same rule as DuckDB's `date + INTERVAL 1 MONTH`, which the feature model uses.
    """
    as_dates = np.datetime64(start, "D") + days.astype("timedelta64[D]")
    months = as_dates.astype("datetime64[M]")
    day_of_month = (as_dates - months.astype("datetime64[D]")).astype(int)
    target = months + np.where(annual, 12, 1).astype("timedelta64[M]")
    month_len = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(int)
    result = target.astype("datetime64[D]") + np.minimum(day_of_month, month_len - 1).astype("timedelta64[D]")
    return (result - np.datetime64(start, "D")).astype(int)


def _draw_customers(rng: np.random.Generator, cfg: WorldConfig, days: int) -> _Customers:
    initial = cfg.customers
    arrivals_per_day = cfg.customers * cfg.monthly_churn_rate / 30.44
    arrivals = rng.poisson(arrivals_per_day, size=days)
    signup = np.concatenate([-rng.integers(1, 6 * 365, size=initial), np.repeat(np.arange(days), arrivals)])
    n = signup.size
    size = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    employees = np.round(np.exp(rng.normal([1.8, 3.3, 4.6], 0.35)[size])).astype(int) + 1
    tier = np.minimum(2, (rng.random(n) < 0.35 + 0.2 * size).astype(int) + (rng.random(n) < 0.1 + 0.2 * size))
    annual = rng.random(n) < cfg.annual_plan_share
    mrr = np.round((49 + 30 * employees**0.7) * np.array([1.0, 1.8, 3.2])[tier], 2)
    activation = np.clip(rng.beta(2.5, 2.0, n) + 0.08 * tier, 0.05, 0.98)
    engagement = np.exp(rng.normal(0.0, 0.35, n))
    risk = -1.6 * (activation - 0.55) - 0.25 * tier - 0.2 * (size - 0.65) + rng.normal(0.0, 0.45, n)
    return _Customers(
        n=n,
        signup=signup,
        annual=annual,
        tier=tier,
        size=size,
        employees=employees,
        sector=rng.integers(0, len(SECTORS), n),
        mrr=mrr,
        engagement=engagement,
        activation=activation,
        ticket_rate=0.012 * (1 + 0.4 * size) * np.exp(rng.normal(0, 0.3, n)),
        pay_delay=rng.gamma(4.0, 5.0, n),
        risk=risk,
    )


def generate_world(cfg: WorldConfig, progress: bool = False) -> dict[str, pl.DataFrame]:
    """Simulate `cfg.years` of history ending the day before `cfg.end_date`."""
    rng = np.random.default_rng(cfg.seed)
    days = round(cfg.years * 365)
    start = cfg.start_date
    c = _draw_customers(rng, cfg, days)
    s = cfg.signal_strength
    tenure_factor = np.exp(-np.clip(-c.signup, 0, None) / 900)  # young accounts churn more
    hazard_scale = np.exp(c.risk + 0.5 * tenure_factor)
    hazard_scale /= hazard_scale.mean()

    # Roll every initial customer's billing period forward to the window start.
    period_end = _add_periods(c.signup, c.annual, start)
    renewals: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    invoices: list[tuple[np.ndarray, np.ndarray]] = [(np.arange(c.n), c.signup.copy())]
    while True:
        due = np.flatnonzero(period_end < 0)
        if due.size == 0:
            break
        renewals.append((due, period_end[due], np.zeros(due.size, dtype=bool)))
        invoices.append((due, period_end[due].copy()))
        period_end[due] = _add_periods(period_end[due], c.annual[due], start)

    active = c.signup < 0
    churned_on = np.full(c.n, np.iinfo(np.int32).max)
    disengaged_since = np.full(c.n, -1)
    decay_len = rng.uniform(14, 35, c.n)
    usage_parts: list[tuple[np.ndarray, ...]] = []
    ticket_parts: list[tuple[np.ndarray, ...]] = []
    invoice_stress: dict[int, float] = {}

    day_iter = range(days)
    if progress:
        from tqdm import tqdm

        day_iter = tqdm(day_iter, desc=f"churn world: {cfg.customers:,} customers", unit="day")
    weekday0 = start.weekday()
    for d in day_iter:
        active |= c.signup == d
        idx = np.flatnonzero(active)
        disengaged = disengaged_since[idx] >= 0
        to_end = period_end[idx] - d

        # Onset of disengagement.
        eligible = ~disengaged & np.where(c.annual[idx], (to_end <= 75) & (to_end >= _MIN_LEAD_DAYS), True)
        base = np.where(c.annual[idx], _ANNUAL_ONSET_HAZARD, _MONTHLY_ONSET_HAZARD)
        onset = eligible & (rng.random(idx.size) < base * hazard_scale[idx])
        disengaged_since[idx[onset]] = d
        disengaged = disengaged_since[idx] >= 0
        progress_ = np.where(disengaged, np.clip((d - disengaged_since[idx]) / decay_len[idx], 0, 1), 0.0)
        decline = 1.0 - 0.92 * s * progress_

        # Daily usage.
        weekend = (weekday0 + d) % 7 >= 5
        p_login = np.clip(0.25 + 0.45 * c.engagement[idx], 0.05, 0.97) * (0.25 if weekend else 1.0) * decline
        logged = rng.random(idx.size) < p_login
        u = idx[logged]
        if u.size:
            eng = c.engagement[u] * decline[logged]
            logins = 1 + rng.poisson(1.2 * eng)
            minutes = np.round(logins * rng.gamma(2.0, 9.0 * c.engagement[u]) * (0.5 + 0.5 * decline[logged]), 1)
            p_feature = np.clip(c.activation[u] * (1.0 - 0.75 * s * progress_[logged]), 0.01, 0.99)
            mask = np.zeros(u.size, dtype=np.int64)
            for k in range(cfg.key_features):
                mask |= (rng.random(u.size) < p_feature * 0.6).astype(np.int64) << k
            features_used = np.bitwise_count(mask.astype(np.uint64)).astype(np.int64) + rng.poisson(2.0 * eng)
            usage_parts.append((u, np.full(u.size, d), logins, minutes, features_used, mask))

        # Support tickets.
        rate = c.ticket_rate[idx] * (1.0 + 2.5 * s * disengaged)
        n_tickets = rng.poisson(rate)
        t = np.repeat(idx, n_tickets)
        if t.size:
            t_dis = np.repeat(disengaged, n_tickets)
            category = rng.choice(len(TICKET_CATEGORIES), size=t.size, p=[0.3, 0.15, 0.25, 0.1, 0.08, 0.12])
            opened_s = d * 86400 + rng.integers(7 * 3600, 19 * 3600, t.size)
            closed_s = opened_s + (rng.gamma(1.5, 20.0, t.size) * 3600).astype(np.int64)
            csat_mean = 4.3 - 1.6 * s * t_dis - 0.4 * (category == 4)
            csat = np.clip(np.round(rng.normal(csat_mean, 0.7)), 1, 5)
            answered = rng.random(t.size) < 0.6
            ticket_parts.append((t, opened_s, closed_s, category, np.where(answered, csat, np.nan)))

        # Renewals at the end of the billing period.
        due = idx[to_end == 0]
        if due.size:
            dis_due = (disengaged_since[due] >= 0) & (d - disengaged_since[due] >= _MIN_LEAD_DAYS)
            noise = np.where(c.annual[due], _NOISE_CHURN["annual"], _NOISE_CHURN["monthly"])
            churn_p = np.where(dis_due, noise + (1 - noise) * _CHURN_IF_DISENGAGED, noise)
            churn = rng.random(due.size) < churn_p
            renewals.append((due, np.full(due.size, d), churn))
            gone = due[churn]
            active[gone] = False
            churned_on[gone] = d
            stay = due[~churn]
            # Recovered customers pay their next invoice late more often.
            recovered = stay[dis_due[~churn]]
            for i in recovered:
                invoice_stress[(int(i), d)] = 1.0
            disengaged_since[recovered] = -1
            invoices.append((stay, np.full(stay.size, d)))
            period_end[stay] = _add_periods(period_end[stay], c.annual[stay], start)

    return _assemble(cfg, c, rng, start, days, usage_parts, ticket_parts, renewals, invoices, invoice_stress)


def _assemble(
    cfg, c: _Customers, rng, start: date, days: int, usage_parts, ticket_parts, renewals, invoices, invoice_stress
):
    ids = np.array([f"C{i:07d}" for i in range(c.n)])
    day0 = np.datetime64(start, "D")
    s = cfg.signal_strength

    customers = pl.DataFrame(
        {
            "customer_id": ids,
            "signup_date": day0 + c.signup.astype("timedelta64[D]"),
            "sector": np.array(SECTORS)[c.sector],
            "company_size": np.array(SIZES)[c.size],
            "employees": c.employees.astype(np.int64),
            "tier": np.array(TIERS)[c.tier],
            "plan": np.where(c.annual, "annual", "monthly"),
            "mrr": c.mrr,
        }
    ).filter(pl.col("signup_date") < cfg.end_date)

    cat = lambda parts, k: np.concatenate([p[k] for p in parts]) if parts else np.array([])  # noqa: E731
    usage = pl.DataFrame(
        {
            "customer_id": ids[cat(usage_parts, 0).astype(int)],
            "activity_date": day0 + cat(usage_parts, 1).astype("timedelta64[D]"),
            "logins": cat(usage_parts, 2).astype(np.int64),
            "session_minutes": cat(usage_parts, 3).astype(np.float64),
            "features_used": cat(usage_parts, 4).astype(np.int64),
            "key_feature_mask": cat(usage_parts, 5).astype(np.int64),
        }
    )

    t_cust = cat(ticket_parts, 0).astype(int)
    epoch = np.datetime64(start, "s")
    opened = (epoch + cat(ticket_parts, 1).astype("timedelta64[s]")).astype("datetime64[us]")
    closed = (epoch + cat(ticket_parts, 2).astype("timedelta64[s]")).astype("datetime64[us]")
    end_ts = np.datetime64(cfg.end_date, "us")
    csat = cat(ticket_parts, 4)
    tickets = (
        pl.DataFrame(
            {
                "ticket_id": [f"T{i:08d}" for i in range(t_cust.size)],
                "customer_id": ids[t_cust],
                "opened_at": opened,
                "category": np.array(TICKET_CATEGORIES)[cat(ticket_parts, 3).astype(int)],
                "closed_at": closed,
                "csat": csat,
            }
        )
        .with_columns(
            # Facts that happen after the end of history are not known yet.
            pl.when(pl.col("closed_at") < end_ts).then(pl.col("closed_at")).alias("closed_at"),
            pl.when(pl.col("closed_at") < end_ts).then(pl.col("csat")).alias("csat"),
        )
        .with_columns(pl.col("csat").fill_nan(None).cast(pl.Int64))
    )

    r_cust = np.concatenate([r[0] for r in renewals])
    r_day = np.concatenate([r[1] for r in renewals])
    r_churn = np.concatenate([r[2] for r in renewals])
    renewals_df = pl.DataFrame(
        {
            "customer_id": ids[r_cust],
            "renewal_date": day0 + r_day.astype("timedelta64[D]"),
            "outcome": np.where(r_churn, "churned", "renewed"),
        }
    )

    i_cust = np.concatenate([i[0] for i in invoices]).astype(int)
    i_day = np.concatenate([i[1] for i in invoices]).astype(int)
    amount = np.where(c.annual[i_cust], 12 * c.mrr[i_cust] * _ANNUAL_DISCOUNT, c.mrr[i_cust])
    stress = (
        np.array([invoice_stress.get((int(a), int(b)), 0.0) for a, b in zip(i_cust, i_day, strict=True)])
        if invoice_stress
        else 0.0
    )
    delay = rng.gamma(2.0, c.pay_delay[i_cust] / 2.0) + s * stress * rng.uniform(10, 40, i_cust.size)
    disputed = rng.random(i_cust.size) < 0.01 + 0.08 * s * stress
    issue = day0 + i_day.astype("timedelta64[D]")
    paid = issue + np.round(delay).astype("timedelta64[D]")
    disputed_at = issue + rng.integers(3, 40, i_cust.size).astype("timedelta64[D]")
    end = np.datetime64(cfg.end_date, "D")
    invoices_df = pl.DataFrame(
        {
            "invoice_id": [f"I{i:08d}" for i in range(i_cust.size)],
            "customer_id": ids[i_cust],
            "issue_date": issue,
            "due_date": issue + np.timedelta64(30, "D"),
            "amount": np.round(amount, 2),
            "paid_date": np.where(paid < end, paid, np.datetime64("NaT")),
            "disputed_at": np.where(disputed & (disputed_at < end), disputed_at, np.datetime64("NaT")),
        }
    ).filter(pl.col("issue_date") < cfg.end_date)

    return {
        "customers": customers.sort("customer_id"),
        "usage_daily": usage.sort("customer_id", "activity_date"),
        "support_tickets": tickets.sort("ticket_id"),
        "invoices": invoices_df.sort("invoice_id"),
        "renewals": renewals_df.filter(pl.col("renewal_date") < cfg.end_date).sort("customer_id", "renewal_date"),
    }
