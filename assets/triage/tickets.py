"""Monthly ingestion: the helpdesk export (or the synthetic helpdesk), scrubbed of PII before it is stored."""


import dagster as dg
import polars as pl

from assets.common import OWNERS, column_schema, markdown_table
from assets.triage.partitions import monthly
from lakehouse.triage.config import CASE, WorldConfig
from lakehouse.triage.data import extract_month, scrub_tickets
from lakehouse.triage.pii import KnownPeople, residual_pii
from lakehouse.triage.schemas import AGENT_LABELS, CLEAN_TICKETS
from resources import LakehouseResource

CLEAN_KEY = dg.AssetKey([CASE, "tickets_clean"])
LABELS_KEY = dg.AssetKey([CASE, "agent_labels"])


def month_partition(key: str) -> tuple[str, str]:
    return ("month", key[:7])


class TicketsConfig(dg.Config):
    source_dir: str | None = None  # a folder with customers, tickets and agent_labels (.parquet or .csv)
    tickets_per_month: int | None = None  # generator volume; default from LAKEHOUSE_SCALE / LAKEHOUSE_TRIAGE_TICKETS_PER_MONTH
    seed: int | None = None
    # Drills on the generator: a share of vague tickets, wrong agent labels, a category mix (weights in the configured order).
    vague_rate: float | None = None
    mislabel_rate: float | None = None
    category_weights: list[float] | None = None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CLEAN_KEY,
            description=CLEAN_TICKETS.description + " Monthly partitions.",
            group_name=CASE,
            kinds={"polars", "parquet"},
            owners=OWNERS[CASE],
            metadata={"dagster/column_schema": column_schema(CLEAN_TICKETS)},
        ),
        dg.AssetSpec(
            LABELS_KEY,
            description=AGENT_LABELS.description + " Monthly partitions (by ticket creation month).",
            group_name=CASE,
            kinds={"polars", "parquet"},
            owners=OWNERS[CASE],
            metadata={"dagster/column_schema": column_schema(AGENT_LABELS)},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_pii_left",
            asset=CLEAN_KEY,
            blocking=True,
            description="The stored text holds no e-mail, phone, Luhn-valid card, valid IBAN, address or CRM name.",
        )
    ],
    partitions_def=monthly,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def triage_tickets(context: dg.AssetExecutionContext, config: TicketsConfig, lakehouse: LakehouseResource):
    """Each month of the partition range: extract, validate, scrub, store. A bad file stops the run before any write."""
    world = WorldConfig.from_env()
    overrides = {"tickets_per_month": config.tickets_per_month, "seed": config.seed, "vague_rate": config.vague_rate, "mislabel_rate": config.mislabel_rate}
    world = world.with_(**{k: v for k, v in overrides.items() if v is not None})
    tables, residual, pii_found, rows = {}, 0, 0, []
    for key in context.partition_keys:
        raw, customers, labels = extract_month(key, source_dir=config.source_dir, world=world, category_weights=config.category_weights)
        clean = scrub_tickets(raw, customers, key)
        people = KnownPeople.from_records(customers.to_dicts())
        residual += sum(sum(residual_pii(t, people).values()) for t in clean["text"])
        pii_found += int(clean["pii_found"].sum())
        tables[(CASE, "tickets_clean", month_partition(key))] = clean
        tables[(CASE, "agent_labels", month_partition(key))] = labels
        rows.append({"month": key[:7], "tickets": clean.height, "labelled": labels.height, "pii_replaced": int(clean["pii_found"].sum())})
    lakehouse.lake.write_many(tables)
    source = config.source_dir or f"generator (seed {world.seed}, {world.tickets_per_month} tickets/month)"
    summary = pl.DataFrame(rows)
    context.log.info(f"{summary['tickets'].sum()} tickets in {len(rows)} month(s); {pii_found} PII items replaced")
    yield dg.MaterializeResult(
        asset_key=CLEAN_KEY,
        metadata={"dagster/row_count": int(summary["tickets"].sum()), "source": source, "pii_replaced": pii_found, "months": dg.MetadataValue.md(markdown_table(summary))},
    )
    yield dg.MaterializeResult(asset_key=LABELS_KEY, metadata={"dagster/row_count": int(summary["labelled"].sum()), "source": source})
    yield dg.AssetCheckResult(
        check_name="no_pii_left",
        asset_key=CLEAN_KEY,
        passed=residual == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"value": residual, "threshold": "== 0", "pii_replaced": pii_found},
    )
