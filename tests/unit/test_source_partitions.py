"""The source-change sensor places each row of the user's file in the partition a load would: the window holding
the row's day in the calendar's time zone (a date is that day, not midnight UTC), shifted by the case's offset."""

from datetime import date, datetime

import dagster as dg
import polars as pl

import definitions
from lakehouse.churn.settings import ChurnSettings
from lakehouse.fraud.settings import FraudSettings
from sensors.sources import Watched, _partitions_of, changed_partitions, horizons_of, table_prints, watched


def _watch(partitions: dg.PartitionsDefinition, offset: int = 0) -> Watched:
    return Watched("case", dg.AssetKey("raw"), {}, partitions, None, object, offset=offset)


def test_dates_and_times_fall_in_the_day_of_the_calendars_zone():
    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="America/Los_Angeles")
    dates = pl.Series([date(2024, 1, 2), date(2024, 1, 3)])
    assert _partitions_of(_watch(daily), dates).to_list() == ["2024-01-02", "2024-01-03"]
    # 03:00 UTC on the 3rd is still the 2nd in Los Angeles; naive times are UTC
    times = pl.Series([datetime(2024, 1, 3, 3), datetime(2024, 1, 3, 9)])
    assert _partitions_of(_watch(daily), times).to_list() == ["2024-01-02", "2024-01-03"]
    aware = times.dt.replace_time_zone("UTC")
    assert _partitions_of(_watch(daily), aware).to_list() == ["2024-01-02", "2024-01-03"]


def test_weeks_with_an_offset_and_rows_outside_the_partitions():
    weekly = dg.WeeklyPartitionsDefinition(start_date="2024-01-01", day_offset=1, timezone="UTC")
    # a fact of the week of Monday 2024-01-08 first counts in the next Monday's snapshot
    days = pl.Series([date(2024, 1, 8), date(2024, 1, 14), date(2023, 12, 31), None])
    keys = _partitions_of(_watch(weekly, offset=1), days).to_list()
    assert keys == ["2024-01-15", "2024-01-15", None, None]


def test_each_case_watches_the_raw_asset_its_loads_materialize():
    """The sensor learns what a load read from the runs that planned the watched asset: an asset no job has (the
    replay found triage watching `triage/tickets`, its load being `triage/tickets_clean`) means no load is ever
    recorded, so no late or corrected period is ever reloaded."""
    graph = definitions.defs().get_repository_def().asset_graph
    for case in ("fraud", "forecast", "churn", "triage"):
        watch = watched(case)
        assert watch.asset in graph.get_all_asset_keys(), case
        assert watch.asset in watch.refresh.selection.resolve(graph), case


def test_a_corrected_period_refreshes_the_later_periods_whose_windows_see_it_up_to_the_latest_loaded():
    """A corrected week of usage changes the features of the next `lookback_weeks` snapshots, not only the first:
    the refresh covers them (the churn replay's corrected tickets would otherwise leave 12 stale snapshots)."""
    order = [f"p{i:02}" for i in range(10)]
    loaded = {p: f"s|{p}" for p in order[:8]}
    prints = {**loaded, "p02": "s|new", "p08": "s|late"}
    assert changed_partitions(prints, loaded, order) == {"p02": "corrected"}
    assert changed_partitions(prints, loaded, order, reach=3) == {
        "p02": "corrected",
        "p03": "corrected",
        "p04": "corrected",
    }
    near_the_end = {**loaded, "p06": "s|new"}
    assert sorted(changed_partitions(near_the_end, loaded, order, reach=5)) == ["p06", "p07"]  # none past the latest
    assert watched("churn").reach(ChurnSettings()) == 18  # tickets joined over 120 days
    assert watched("churn").reach(ChurnSettings(lookback_weeks=26)) == 26
    fraud = FraudSettings()
    assert watched("fraud").reach(fraud) == 38  # 30-day customer windows; 30-day fraud history 7 days late
    assert watched("fraud").reach(fraud.with_(features={"history_days": [1, 7]})) == 31
    assert watched("triage").reach(object()) == 1


def test_a_tickets_closure_is_news_of_the_closing_week_and_a_corrected_score_reloads_that_week():
    """Closing a ticket fills its closure columns: printed in the closing week's snapshot, so a ticket closed after
    its week was loaded does not make that week look corrected every Monday (the churn replay reloaded last week's
    snapshot each week); a corrected satisfaction score changes the closing week's print, the opening one's never."""
    watch = watched("churn")
    opened = {"ticket_id": ["T1", "T2"], "customer_id": ["C1", "C2"], "opened_at": [date(2024, 7, 5)] * 2}
    still_open = pl.DataFrame(
        {**opened, "closed_at": [None, None], "csat": [None, None]}, schema_overrides={"closed_at": pl.Datetime}
    )
    closed = pl.DataFrame({**opened, "closed_at": [datetime(2024, 7, 9, 10), None], "csat": [4, None]})
    rescored = closed.with_columns(csat=pl.Series([1, None]))
    before, after, fixed = (table_prints(watch, "support_tickets", f) for f in (still_open, closed, rescored))
    assert before["2024-07-08"] == after["2024-07-08"] == fixed["2024-07-08"]  # the opening week's snapshot
    assert "2024-07-15" not in before and after["2024-07-15"] != fixed["2024-07-15"]  # the closing week's


def test_a_stores_new_day_is_news_and_a_corrected_past_day_is_a_correction():
    """Forecast partitions are stores, not periods: compared up to the latest day the store's last load saw, the
    next night's sales change nothing (the forecast replay would otherwise refresh every store twice a night),
    while a corrected past day, or a day that arrives after a later one was loaded, does."""
    watch = Watched("forecast", dg.AssetKey("sales"), {"sales": "store_id"}, None, None, object, horizon="date")
    days = [date(2016, 4, d) for d in (20, 21, 22)]
    sales = pl.DataFrame({"store_id": ["s1", "s1", "s1", "s2"], "date": [*days, days[0]], "units": [1, 2, 3, 4]})
    loaded = {p: f"scheme|{';'.join(v)}" for p, v in table_prints(watch, "sales", sales).items()}
    assert horizons_of(loaded) == {"s1": "2016-04-22", "s2": "2016-04-20"}
    next_night = pl.concat(
        [sales, pl.DataFrame({"store_id": ["s1", "s2"], "date": [date(2016, 4, 23)] * 2, "units": [5, 6]})]
    )

    def compared(frame):
        return {p: f"scheme|{';'.join(v)}" for p, v in table_prints(watch, "sales", frame, horizons_of(loaded)).items()}

    assert compared(next_night) == loaded
    corrected = next_night.with_columns(units=pl.when(pl.col("date") == days[1]).then(9).otherwise("units"))
    assert compared(corrected)["s1"] != loaded["s1"] and compared(corrected)["s2"] == loaded["s2"]
    late = sales.filter(pl.col("date") != days[1])  # the 21st missing when the 22nd was loaded
    loaded = {p: f"scheme|{';'.join(v)}" for p, v in table_prints(watch, "sales", late).items()}
    assert compared(sales)["s1"] != loaded["s1"]
