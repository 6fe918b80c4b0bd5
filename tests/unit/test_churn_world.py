import re
from datetime import date

import duckdb
import numpy as np
import polars as pl

from lakehouse.churn.settings import ChurnSettings
from lakehouse.churn.world import WorldConfig, _add_periods, generate_world
from tests.conftest import ROOT

SMALL = WorldConfig(customers=600, years=1.5, seed=3)


def test_same_seed_same_tables_and_another_seed_differs():
    a, b = generate_world(SMALL), generate_world(SMALL)
    for name in a:
        assert a[name].equals(b[name]), name
    c = generate_world(SMALL.with_(seed=4))
    assert not a["usage_daily"].equals(c["usage_daily"])


def test_monthly_churn_is_near_the_seed_rate_and_the_base_is_stable():
    world = generate_world(WorldConfig(customers=2000, seed=5))
    renewals, customers = world["renewals"], world["customers"]
    rates = []
    for month in pl.date_range(date(2024, 1, 1), date(2026, 10, 1), "1mo", eager=True):
        churned_before = renewals.filter((pl.col("outcome") == "churned") & (pl.col("renewal_date") < month))[
            "customer_id"
        ]
        active = customers.filter(
            (pl.col("signup_date") < month) & ~pl.col("customer_id").is_in(churned_before.implode())
        ).height
        month_end = month.replace(month=month.month % 12 + 1, year=month.year + (month.month == 12))
        churned = renewals.filter(
            (pl.col("outcome") == "churned") & pl.col("renewal_date").is_between(month, month_end, closed="left")
        ).height
        rates.append(churned / active)
    assert 0.036 < np.mean(rates) < 0.048
    assert abs(active - 2000) < 300


def test_churners_show_the_seed_signals_before_leaving():
    world = generate_world(SMALL)
    churn = world["renewals"].filter(pl.col("outcome") == "churned").select("customer_id", churn_date="renewal_date")
    usage = world["usage_daily"].join(churn, on="customer_id")
    days_before = (pl.col("churn_date") - pl.col("activity_date")).dt.total_days()
    late = usage.filter(days_before.is_between(1, 14))["session_minutes"].sum()
    early = usage.filter(days_before.is_between(57, 70))["session_minutes"].sum()
    assert late < 0.5 * early  # usage decays in the weeks before a non-renewal


def test_renewal_periods_follow_duckdb_interval_arithmetic():
    start = date(2023, 1, 1)
    days = np.arange(0, 800, 7)
    annual = days % 2 == 0
    ours = _add_periods(days, annual, start)
    with duckdb.connect() as con:
        for d, a, o in zip(days, annual, ours, strict=True):
            unit = "year" if a else "month"
            expected = con.sql(
                f"select datediff('day', date '{start}', date '{start}' + interval {int(d)} day + interval 1 {unit})"
            ).fetchall()[0][0]
            assert o == expected


def test_every_setting_the_sql_reads_is_passed_by_the_assets():
    """The SQL reads case settings only through the `setting` macros; each name it asks for is a dbt var the
    assets pass."""
    sql = "\n".join(p.read_text() for p in (ROOT / "dbt_project" / "models" / "churn").rglob("*.sql"))
    asked = set(re.findall(r"setting(?:_list)?\('([a-z_]+)'\)", sql))
    assert asked and asked <= set(ChurnSettings().dbt_vars()), asked - set(ChurnSettings().dbt_vars())


def test_raw_table_docs_are_current():
    from lakehouse.churn.schemas import markdown

    assert (ROOT / "docs" / "churn_raw_tables.md").read_text() == markdown() + "\n", "run `make docs`"
