"""Monthly ingestion: the helpdesk export (the `sources` file, or the synthetic helpdesk), scrubbed of
personal data and audited before anything is stored."""

from datetime import date

import dagster as dg

from assets.common import OWNERS, check_result, column_schema, require_partitions, table
from assets.triage.partitions import monthly
from lakehouse.triage.pipeline import CASE, RawTables, generated, ingest, load_source
from lakehouse.triage.schemas import AGENT_LABELS, CLEAN_TICKETS
from lakehouse.triage.settings import TriageSettings
from resources import LakehouseResource, SourcesResource

CLEAN_KEY = dg.AssetKey([CASE, "tickets_clean"])
LABELS_KEY = dg.AssetKey([CASE, "agent_labels"])


class TicketsConfig(dg.Config):
    replace_with_empty: bool = False  # store a selected month the file has no ticket for as empty, on purpose
    # Drills on the synthetic helpdesk only (refused with a user source): volume, seed, vague tickets,
    # wrong agent labels, a category mix (weights in the generator's category order).
    tickets_per_month: int | None = None
    seed: int | None = None
    vague_rate: float | None = None
    mislabel_rate: float | None = None
    category_weights: list[float] | None = None


def generator_tables(config: TicketsConfig, keys: list[str], today: date) -> RawTables:
    """The selected months of the synthetic helpdesk."""
    import polars as pl

    from lakehouse.triage.world import WorldConfig, generate_customers, generate_month

    drills = {
        "tickets_per_month": config.tickets_per_month,
        "seed": config.seed,
        "vague_rate": config.vague_rate,
        "mislabel_rate": config.mislabel_rate,
    }
    world = WorldConfig.from_env().with_(**{k: v for k, v in drills.items() if v is not None})
    customers = generate_customers(world)
    months = [generate_month(world, date.fromisoformat(k), customers, config.category_weights) for k in keys]
    origin = f"generator (seed {world.seed}, {world.tickets_per_month} tickets/month)"
    return generated(pl.concat([t for t, _ in months]), pl.concat([lab for _, lab in months]), customers, origin, today)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CLEAN_KEY,
            description=CLEAN_TICKETS.description + " Monthly partitions.",
            group_name=CASE,
            kinds={"polars", "parquet"},
            owners=OWNERS[CASE],
            metadata={"dagster/column_schema": column_schema(CLEAN_TICKETS)},
            skippable=True,
        ),
        dg.AssetSpec(
            LABELS_KEY,
            description=AGENT_LABELS.description + " Monthly partitions (by ticket creation month).",
            group_name=CASE,
            kinds={"polars", "parquet"},
            owners=OWNERS[CASE],
            metadata={"dagster/column_schema": column_schema(AGENT_LABELS)},
            skippable=True,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_pii_left",
            asset=CLEAN_KEY,
            blocking=True,
            description=(
                "An independent detector (phonenumbers' matcher, stdnum on tokens, the CRM's names) finds no personal data in "
                "the scrubbed text; evaluated before the write, which happens only when it passes."
            ),
        )
    ],
    partitions_def=monthly,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def triage_tickets(
    context: dg.AssetExecutionContext, config: TicketsConfig, lakehouse: LakehouseResource, sources: SourcesResource
):
    """The months of the partition range: load, validate, scrub, audit, then store. A bad file, or personal data
    left after scrubbing, stops the run before any write."""
    settings = TriageSettings()
    keys = list(context.partition_keys)
    require_partitions(monthly, keys, TriageSettings)
    today = date.today()
    source = sources.case(CASE)
    if source is not None:
        if any(v is not None for k, v in config.model_dump().items() if k != "replace_with_empty"):
            raise dg.Failure(
                "generator drills (tickets_per_month, seed, ...) do not apply: the triage case reads the sources file"
            )
        raw = load_source(source, today)
    else:
        raw = generator_tables(config, keys, today)
    allowed = monthly.get_partition_keys()
    result = ingest(raw, keys, allowed, settings, lakehouse.lake, replace_with_empty=config.replace_with_empty)
    yield check_result(result.check, CLEAN_KEY)
    if not result.written:
        raise dg.Failure(f"nothing stored: {result.check.description}")
    summary = result.summary
    context.log.info(
        f"{summary['tickets'].sum()} tickets in {summary.height} month(s); {summary['pii_replaced'].sum()} PII items replaced"
    )
    months = table(summary)
    yield dg.MaterializeResult(
        asset_key=CLEAN_KEY,
        metadata={
            "dagster/row_count": int(summary["tickets"].sum()),
            "source": raw.origin,
            "pii_replaced": int(summary["pii_replaced"].sum()),
            "tickets_of_other_months_skipped": result.skipped,
            "months": months,
        },
    )
    yield dg.MaterializeResult(
        asset_key=LABELS_KEY, metadata={"dagster/row_count": int(summary["labelled"].sum()), "source": raw.origin}
    )
