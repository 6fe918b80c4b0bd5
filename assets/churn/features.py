"""dbt models of the churn case: staging views, weekly point-in-time features, labels.

Every build passes the case settings the SQL reads (ChurnSettings.dbt_vars), and runs in the step's own
process with the project parsed once per process (DbtResource.invoke), not as a dbt subprocess."""

import json

import dagster as dg
from dagster_dbt import dbt_assets

from assets.churn.partitions import weekly_snapshots
from assets.common import DUCKDB_POOL
from assets.dbt import LakehouseDbtTranslator
from lakehouse.churn.settings import ChurnSettings
from resources import LakehouseResource, SourcesResource
from resources.dbt import DBT_PROJECT, DbtResource

TRANSLATOR = LakehouseDbtTranslator()


def _build(context, dbt: DbtResource, lakehouse: LakehouseResource, sources: SourcesResource, **extra_vars):
    dbt_vars = {**sources.settings(ChurnSettings).dbt_vars(), **extra_vars}
    # dbt reads the warehouse and lake paths from its environment: set for the invocation only, so this
    # process's environment, and the next asset's, stay as they were.
    yield from dbt.invoke(["build", "--vars", json.dumps(dbt_vars)], context=context, env=lakehouse.dbt_env())


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    select="tag:churn,tag:staging",
    name="churn_staging",
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def churn_staging(
    context: dg.AssetExecutionContext, dbt: DbtResource, lakehouse: LakehouseResource, sources: SourcesResource
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
    context: dg.AssetExecutionContext, dbt: DbtResource, lakehouse: LakehouseResource, sources: SourcesResource
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
    context: dg.AssetExecutionContext, dbt: DbtResource, lakehouse: LakehouseResource, sources: SourcesResource
):
    yield from _build(context, dbt, lakehouse, sources)
