"""Raw churn tables: from the user's source when the sources file lists the case, else the generator."""

import dagster as dg

from assets.common import load_raw, raw_pool, raw_table_specs
from lakehouse.churn.pipeline import ChurnStore, store_raw_tables
from lakehouse.churn.schemas import RAW, RAW_TABLES
from lakehouse.churn.settings import CASE, ChurnSettings
from resources import LakehouseResource, SourcesResource


class GeneratorConfig(dg.Config):
    """Only for the synthetic world (no source configured): its size and drills."""

    customers: int | None = None  # default from LAKEHOUSE_SCALE
    seed: int | None = None
    signal_strength: float | None = None  # 0 makes churn pure noise, so the gate must say NO-GO


@dg.multi_asset(specs=raw_table_specs(CASE, RAW_TABLES), can_subset=False, pool=raw_pool(CASE))
def churn_raw(
    context: dg.AssetExecutionContext, config: GeneratorConfig, lakehouse: LakehouseResource, sources: SourcesResource
):
    """All five raw tables at once: a bad file in any of them leaves the lake unchanged."""
    batch = load_raw(context, RAW, sources, ChurnSettings, config)
    status = store_raw_tables(ChurnStore(lakehouse.lake, lakehouse.paths.warehouse), batch.tables)
    for schema in RAW_TABLES:
        df = batch.tables[schema.name]
        yield dg.MaterializeResult(
            asset_key=[CASE, schema.name],
            metadata={
                "dagster/row_count": 0 if df is None else df.height,
                "source": batch.origin,
                "load": status[schema.name],
            },
        )
