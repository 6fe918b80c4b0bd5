"""dbt models of the churn case: staging views, weekly point-in-time features, labels."""


import json
import os

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from assets.churn.partitions import weekly_snapshots
from assets.common import DUCKDB_POOL
from assets.dbt import LakehouseDbtTranslator
from resources import LakehouseResource
from resources.dbt import DBT_PROJECT

MANIFEST = DBT_PROJECT.manifest_path
TRANSLATOR = LakehouseDbtTranslator()


def _build(context, dbt: DbtCliResource, lakehouse: LakehouseResource, dbt_vars: dict | None = None):
    os.environ.update(lakehouse.dbt_env())
    args = ["build"]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    yield from dbt.cli(args, context=context).stream()


@dbt_assets(
    manifest=MANIFEST,
    select="tag:churn,tag:staging",
    name="churn_staging",
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def churn_staging(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource):
    yield from _build(context, dbt, lakehouse)


@dbt_assets(
    manifest=MANIFEST,
    select="churn_features",
    name="churn_features",
    dagster_dbt_translator=TRANSLATOR,
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def churn_features(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource):
    """Computes the snapshots of the partition range in one dbt run (a backfill is one run)."""
    window = context.partition_time_window
    dbt_vars = {"snapshot_start": window.start.date().isoformat(), "snapshot_end": window.end.date().isoformat()}
    yield from _build(context, dbt, lakehouse, dbt_vars)


@dbt_assets(
    manifest=MANIFEST,
    select="churn_labels",
    name="churn_labels",
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def churn_labels(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource):
    yield from _build(context, dbt, lakehouse)
