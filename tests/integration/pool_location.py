"""A code location of two DuckDB assets in the project's `duckdb` pool, for the run-monitoring
test: one opens the warehouse and blocks until it is killed, the next writes to it."""

import time

import dagster as dg
import duckdb

from assets.common import DUCKDB_POOL
from resources import LakehouseResource


@dg.asset(pool=DUCKDB_POOL)
def holds_the_warehouse(lakehouse: LakehouseResource) -> None:
    lakehouse.paths.root.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(lakehouse.paths.warehouse)) as con:
        con.execute("CREATE TABLE IF NOT EXISTS held AS SELECT 1 AS x")
        time.sleep(600)  # the test kills this step long before


@dg.asset(pool=DUCKDB_POOL)
def next_duckdb_asset(lakehouse: LakehouseResource) -> None:
    with duckdb.connect(str(lakehouse.paths.warehouse)) as con:
        con.execute("CREATE OR REPLACE TABLE written_after_the_kill AS SELECT 1 AS x")


defs = dg.Definitions(
    assets=[holds_the_warehouse, next_duckdb_asset],
    jobs=[dg.define_asset_job("hold", [holds_the_warehouse]), dg.define_asset_job("next", [next_duckdb_asset])],
    resources={"lakehouse": LakehouseResource(home=dg.EnvVar("LAKEHOUSE_HOME"))},
)
