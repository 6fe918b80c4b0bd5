"""dbt models of the churn case: staging views, weekly point-in-time features, labels.

Every build passes the case settings the SQL reads (ChurnSettings.dbt_vars)."""

import json
import os
from unittest import mock

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from assets.churn.partitions import weekly_snapshots
from assets.common import DUCKDB_POOL
from assets.dbt import LakehouseDbtTranslator
from lakehouse.churn.settings import ChurnSettings
from resources import LakehouseResource, SourcesResource
from resources.dbt import DBT_PROJECT

TRANSLATOR = LakehouseDbtTranslator()


def _build(context, dbt: DbtCliResource, lakehouse: LakehouseResource, sources: SourcesResource, **extra_vars):
    dbt_vars = {**sources.settings(ChurnSettings).dbt_vars(), **extra_vars}
    # dbt reads the warehouse and lake paths from its environment: set for the subprocess only (it
    # starts inside `cli`), so this process's environment, and the next asset's, stay as they were.
    with mock.patch.dict(os.environ, lakehouse.dbt_env()):
        invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
    yield from invocation.stream()


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    select="tag:churn,tag:staging",
    name="churn_staging",
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def churn_staging(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource, sources: SourcesResource
):
    yield from _build(context, dbt, lakehouse, sources)


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    select="churn_features",
    name="churn_features",
    dagster_dbt_translator=TRANSLATOR,
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def churn_features(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource, sources: SourcesResource
):
    """Computes the snapshots of the partition range in one dbt run (a backfill is one run)."""
    window = context.partition_time_window
    yield from _build(
        context,
        dbt,
        lakehouse,
        sources,
        snapshot_start=window.start.date().isoformat(),
        snapshot_end=window.end.date().isoformat(),
    )


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    select="churn_labels",
    name="churn_labels",
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def churn_labels(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource, sources: SourcesResource
):
    yield from _build(context, dbt, lakehouse, sources)
