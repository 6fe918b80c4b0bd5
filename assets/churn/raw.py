"""Raw churn tables: from the user's source when the sources file lists the case, else the generator."""

from datetime import date

import dagster as dg

from assets.common import raw_table_specs
from lakehouse.churn.pipeline import ChurnStore, store_raw_tables
from lakehouse.churn.schemas import RAW_TABLES, load_raw_tables
from lakehouse.churn.settings import CASE
from lakehouse.churn.world import WorldConfig, generate_world
from lakehouse.common.schema import validate_frame
from resources import LakehouseResource, SourcesResource


class GeneratorConfig(dg.Config):
    """Only for the synthetic world (no source configured): its size and drills."""

    customers: int | None = None  # default from LAKEHOUSE_SCALE
    seed: int | None = None
    signal_strength: float | None = None  # 0 makes churn pure noise, so the gate must say NO-GO


@dg.multi_asset(specs=raw_table_specs(CASE, RAW_TABLES), can_subset=False)
def churn_raw(
    context: dg.AssetExecutionContext, config: GeneratorConfig, lakehouse: LakehouseResource, sources: SourcesResource
):
    """All five raw tables at once: a bad file in any of them leaves the lake unchanged."""
    today = date.today()
    source = sources.case(CASE)
    if source is not None:
        context.log.info(f"loading churn tables from {source.folder}")
        tables = load_raw_tables(source, today)
        origin = str(source.folder)
    else:
        overrides = {"customers": config.customers, "seed": config.seed, "signal_strength": config.signal_strength}
        world = WorldConfig().with_(**{k: v for k, v in overrides.items() if v is not None})
        context.log.info(f"generating the churn world: {world.customers:,} customers, seed {world.seed}")
        generated = generate_world(world, progress=world.customers >= 10_000)
        tables = {s.name: validate_frame(generated[s.name], s, source="generator", today=today) for s in RAW_TABLES}
        origin = f"generator (seed {world.seed}, {world.customers:,} customers)"
    status = store_raw_tables(ChurnStore(lakehouse.lake, lakehouse.paths.warehouse), tables)
    for schema in RAW_TABLES:
        df = tables[schema.name]
        yield dg.MaterializeResult(
            asset_key=[CASE, schema.name],
            metadata={
                "dagster/row_count": 0 if df is None else df.height,
                "source": origin,
                "load": status[schema.name],
            },
        )
