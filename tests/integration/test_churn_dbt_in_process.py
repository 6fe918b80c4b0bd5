"""dbt in the process (lakehouse.churn.dbt_runner): the project parsed once per process and environment, the
warehouse released after each invocation, the caller's environment left as it was, failures with dbt's own
message; and the dbt assets through it yield the same materializations and check results as before."""

import json
import os

import duckdb
import pytest

from lakehouse.churn import dbt_runner
from lakehouse.churn.settings import CASE, ChurnSettings
from lakehouse.common.lake import Lake
from tests.integration.churn_helpers import tiny_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world():
    return tiny_world()


def _home(path, world) -> dict:
    Lake(str(path / "lake")).write_many({(CASE, name, None): df for name, df in world.items()})
    return {
        "LAKEHOUSE_WAREHOUSE": str(path / "warehouse.duckdb"),
        "LAKEHOUSE_LAKE_URL": str(path / "lake"),
        "LAKEHOUSE_DBT_TARGET": "local",
    }


def _build(env, target, select="tag:churn,tag:staging", **extra_vars):
    dbt_vars = json.dumps({**ChurnSettings().dbt_vars(), **extra_vars})
    return dbt_runner.invoke(["build", "--select", select, "--vars", dbt_vars], env=env, target_path=target)


def test_one_parse_per_environment_and_the_warehouse_released_after_each_invocation(tmp_path, world):
    before = dict(os.environ)
    env = _home(tmp_path / "a", world)
    first = _build(env, tmp_path / "t1").raise_on_error()
    parsed = dbt_runner._PARSED[0].manifest
    assert first.success and {e["info"]["name"] for e in first.events} == {"LogModelResult", "LogTestResult"}
    assert sum(e["info"]["name"] == "LogModelResult" for e in first.events) == 5
    # The warehouse is closed: this process opens it read-only, which DuckDB refuses while dbt holds it.
    with duckdb.connect(env["LAKEHOUSE_WAREHOUSE"], read_only=True) as con:
        assert con.sql("select count(*) from stg_churn__customers").fetchall()[0][0] == world["customers"].height
    assert dict(os.environ) == before

    again = _build(
        env, tmp_path / "t2", select="churn_features", snapshot_start="2026-11-02", snapshot_end="2026-11-09"
    )
    assert again.raise_on_error().success and dbt_runner._PARSED[0].manifest is parsed  # no second parse

    other = _home(tmp_path / "b", world)  # another lake: sources.yml reads its path at parse time
    assert _build(other, tmp_path / "t3").raise_on_error().success
    assert dbt_runner._PARSED[0].manifest is not parsed
    with duckdb.connect(other["LAKEHOUSE_WAREHOUSE"], read_only=True) as con:
        assert con.sql("select count(*) from stg_churn__usage_weekly").fetchall()[0][0] > 0


def test_a_failing_build_raises_with_dbts_message(tmp_path, world):
    env = _home(tmp_path, {k: v for k, v in world.items() if k != "renewals"})  # a raw table missing
    failed = _build(env, tmp_path / "t")
    assert not failed.success and failed.errors
    with pytest.raises(dbt_runner.DbtError, match="renewals"):
        failed.raise_on_error()
