"""Features as of a past snapshot must not change when later facts arrive (seed case 2's
leakage incident, applied to churn): build them from the world as known at a cut date,
then from the full world with every later event appended, and compare."""

import os
from datetime import timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources import LakehouseResource, default_resources
from tests.integration.churn_helpers import TINY, build_features, load_raw, mondays, tiny_world, truncate, write_source

pytestmark = pytest.mark.integration


def _features(home, first, last) -> pl.DataFrame:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(
            f"select * from churn_features where snapshot_date between '{first}' and '{last}' "
            "order by snapshot_date, customer_id"
        ).pl()


def test_appending_future_events_leaves_past_features_unchanged(lakehouse_home, tmp_path):
    world = tiny_world()
    cut = TINY.end_date - timedelta(weeks=10)  # a Monday
    snapshots = mondays(TINY.first_snapshot, cut)
    first, last = snapshots[-6], snapshots[-1]
    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}

    lakehouse_env = lambda: {k: v for k, v in os.environ.items() if k.startswith("LAKEHOUSE_")}  # noqa: E731
    environment = lakehouse_env()
    load_raw(instance, resources, write_source(truncate(world, cut), tmp_path / "as_of_cut"))
    build_features(instance, resources, first, last)
    before = _features(lakehouse_home, first, last)
    # dbt's paths reach its subprocess only: a later test in this process must not find this home's lake.
    assert lakehouse_env() == environment

    full = write_source(world, tmp_path / "full")
    load_raw(instance, resources, full)
    build_features(instance, resources, first, last)
    after = _features(lakehouse_home, first, last)

    assert before.height > 6 * 200 and before["snapshot_date"].n_unique() == 6
    assert_frame_equal(before, after)
    # The appended history is really there: later snapshots see facts the cut world lacked.
    assert world["usage_daily"]["activity_date"].max() > truncate(world, cut)["usage_daily"]["activity_date"].max()
