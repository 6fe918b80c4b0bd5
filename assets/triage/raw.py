"""Monthly ingestion: the helpdesk export (the `sources` file, or the synthetic helpdesk), scrubbed of
personal data and audited before anything is stored."""

import dagster as dg

from assets.common import OWNERS, check_result, column_schema, load_raw, raw_pool, table
from assets.triage.partitions import monthly
from lakehouse.common.raw_source import CaseRaw, RawBatch, Request
from lakehouse.common.sources import CaseSource
from lakehouse.triage.pipeline import CASE, RawTables, ingest, load_source
from lakehouse.triage.schemas import AGENT_LABELS, CLEAN_TICKETS, check_raw_tables, generated
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


def _files(source: CaseSource, request: Request) -> RawBatch:
    raw = load_source(source, request.today)
    tables = {"tickets": raw.tickets, "agent_labels": raw.labels, "customers": raw.customers}
    labels = {"tickets": raw.tickets_label, "agent_labels": raw.labels_label}
    check_raw_tables(raw.tickets, raw.labels, request.settings, labels)
    return RawBatch(tables, raw.origin, labels=labels, rows_outside_selection=raw.rows_outside_selection)


RAW = CaseRaw(CASE, _files, generated)


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
                "An independent detector (phonenumbers' matcher, stdnum on tokens, the CRM's names) finds no personal "
                "data in the scrubbed text; evaluated before the write, which happens only when it passes."
            ),
        )
    ],
    partitions_def=monthly,
    pool=raw_pool(CASE),
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def triage_tickets(
    context: dg.AssetExecutionContext, config: TicketsConfig, lakehouse: LakehouseResource, sources: SourcesResource
):
    """The months of the partition range: load, validate, scrub, audit, then store. A bad file, or personal data
    left after scrubbing, stops the run before any write."""
    batch = load_raw(context, RAW, sources, TriageSettings, config, monthly)
    tables = batch.tables
    raw = RawTables(
        tables["tickets"],
        tables["agent_labels"],
        tables["customers"],
        batch.origin,
        batch.labels["tickets"],
        batch.labels["agent_labels"],
        batch.rows_outside_selection,
    )
    settings = sources.settings(TriageSettings)
    keys = list(context.partition_keys)
    allowed = monthly.get_partition_keys()
    result = ingest(raw, keys, allowed, settings, lakehouse.lake, replace_with_empty=config.replace_with_empty)
    yield check_result(result.check, CLEAN_KEY)
    if not result.written:
        raise dg.Failure(f"nothing stored: {result.check.description}")
    summary = result.summary
    replaced = summary["pii_replaced"].sum()
    context.log.info(f"{summary['tickets'].sum()} tickets in {summary.height} month(s); {replaced} PII items replaced")
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
