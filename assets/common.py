"""Conventions shared by every case's assets: owners, pools, partitions from settings, the one
adapter from a domain `CheckOutcome` to a Dagster check result, and the champion asset over the one
promotion path (lakehouse.common.promotion)."""

import re
import warnings
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import dagster as dg
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from lakehouse.common import display, promotion
from lakehouse.common.checks import CheckOutcome
from lakehouse.common.ids import MAX_ID_LENGTH, id_problem, shown
from lakehouse.common.promotion import Verdict
from lakehouse.common.raw_source import CaseRaw, RawBatch, Request
from lakehouse.common.schema import TableSchema as DomainSchema
from lakehouse.common.settings import Calendar, CaseSettings

OWNERS = {
    "churn": ["team:customer-success-ml"],
    "forecast": ["team:supply-chain-ml"],
    "fraud": ["team:payments-risk-ml"],
    "triage": ["team:support-ml"],
    "platform": ["team:ml-platform"],
}

# Report assets (ROI, backtests, confusion matrices) carry this tag: their latest metadata shows a
# table and an inline chart (demos/ui_check.py checks it in the UI).
REPORT = {"lakehouse/report": "true"}

# Two Dagster warnings this project expects, silenced here once: the single-run backfill policy is a
# beta parameter of `@asset` that the raw loads and batch scores rely on, and a partitioned job that
# mixes such a load with per-partition assets runs one partition per run, which is what its schedule asks.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy` of function `asset`", category=dg.BetaWarning)
warnings.filterwarnings(
    "ignore", message="Asset job .* materializes assets with varying BackfillPolicies", category=UserWarning
)

# Every asset that opens the DuckDB warehouse runs in this pool; its limit is 1
# (dagster.yaml), so parallel partition runs never contend for the single-writer file.
DUCKDB_POOL = "duckdb"


def column_schema(schema: DomainSchema) -> TableSchema:
    return TableSchema(
        columns=[TableColumn(c.name, str(c.polars_dtype), description=c.description) for c in schema.columns]
    )


def raw_table_specs(case: str, schemas: list[DomainSchema]) -> list[AssetSpec]:
    """One asset per raw table of a case, described by its schema (a multi_asset's specs)."""
    return [
        AssetSpec(
            [case, schema.name],
            description=schema.description,
            group_name=case,
            kinds={"polars", "parquet"},
            owners=OWNERS[case],
            metadata={"dagster/column_schema": column_schema(schema)},
        )
        for schema in schemas
    ]


def frame_schema(df: pl.DataFrame, descriptions: dict[str, str] | None = None) -> TableSchema:
    descriptions = descriptions or {}
    return TableSchema(columns=[TableColumn(n, str(t), description=descriptions.get(n)) for n, t in df.schema.items()])


def table(df: pl.DataFrame, float_format: str = "{:,.3f}", percent: tuple[str, ...] = ()) -> MetadataValue:
    """A table the UI shows inline (Markdown longer than 1,000 characters hides behind a link); the
    `percent` columns are rates shown as percentages (`wape` -> `wape %`, 0.127 -> 12.70)."""
    if percent:
        df = df.with_columns([(pl.col(c) * 100).alias(c) for c in percent]).rename({c: f"{c} %" for c in percent})
        float_format = "{:,.2f}"

    def cell(value):
        if isinstance(value, float):
            return float_format.format(value) if value == value else "n/a"
        return value if isinstance(value, (int, bool, str)) or value is None else str(value)

    records = [dg.TableRecord({k: cell(v) for k, v in row.items()}) for row in df.iter_rows(named=True)]
    return MetadataValue.table(records, schema=frame_schema(df))


def rendered(metadata: dict) -> dict:
    """A domain result's metadata for the UI: frames become tables, the rest stays as it is."""
    return {k: table(v) if isinstance(v, pl.DataFrame) else v for k, v in metadata.items()}


def rate(x: float | None, digits: int = 1) -> MetadataValue:
    """A rate or share as a percentage."""
    return MetadataValue.text(display.pct(x, digits))


def money(x: float | None, currency: str) -> MetadataValue:
    return MetadataValue.text(display.money(x, currency))


def number(x: float | None, digits: int = 3) -> MetadataValue:
    """A float rounded to what it means (a score, a statistic)."""
    return MetadataValue.float(round(float(x), digits)) if x is not None and x == x else MetadataValue.text("n/a")


def check_result(outcome: CheckOutcome, asset_key: AssetKey | None = None) -> AssetCheckResult:
    """The Dagster check result of a domain check outcome (value and threshold always present)."""
    metadata = rendered({"value": outcome.value, "threshold": outcome.threshold, **outcome.metadata})
    return AssetCheckResult(
        check_name=outcome.name,
        asset_key=asset_key,
        passed=bool(outcome.passed),
        severity=AssetCheckSeverity.ERROR if outcome.severity == "ERROR" else AssetCheckSeverity.WARN,
        description=outcome.description or None,
        metadata=metadata,
    )


def worst(outcomes) -> CheckOutcome:
    """One evaluation for a run over several partitions: the last failing partition's outcome, else the last one."""
    failing = [o for o in outcomes if not o.passed]
    return (failing or list(outcomes))[-1]


def gate_check_result(registry, verdict: Verdict, asset_key: AssetKey | None = None) -> AssetCheckResult:
    """The gate's check result, its verdict recorded on the challenger's version first (the only input
    promotion trusts). A refusal is a WARN failure: an alert, and a green run."""
    promotion.record(registry, verdict)
    return check_result(verdict.outcome(), asset_key)


class ChampionConfig(dg.Config):
    rollback_to: str | None = None  # move `champion` back to this earlier version that passed its gate
    reason: str | None = None  # why (required with rollback_to; recorded in the model's history)


def champion_asset(
    case: str, model_key: AssetKey, model_name: Callable[[Any], str], settings_class: type, description: str
):
    """The case's `champion_model` asset: moves `champion` to the challenger whose recorded gate verdict is a
    pass, or keeps the champion and says why (a refusal is an outcome, not a failure); with `rollback_to`,
    moves it back to an earlier version that passed. Its metadata shows every version's history."""
    from resources import LakehouseResource, MlflowResource, SourcesResource

    @asset(
        key=[case, "champion_model"],
        deps=[model_key],
        group_name=case,
        kinds={"mlflow"},
        owners=OWNERS[case],
        description=description,
    )
    def champion_model(
        context: AssetExecutionContext,
        config: ChampionConfig,
        lakehouse: LakehouseResource,
        mlflow: MlflowResource,
        sources: SourcesResource,
    ) -> MaterializeResult:
        name = model_name(sources.settings(settings_class))
        registry = mlflow.registry(lakehouse)
        if config.rollback_to:
            try:
                outcome = promotion.rollback(registry, name, config.rollback_to, config.reason or "")
            except ValueError as exc:
                raise Failure(str(exc)) from None
        else:
            outcome = promotion.promote(registry, name)
            if outcome.version is None:
                raise Failure(f"{name} has no challenger: materialize {model_key.to_user_string()} first")
        (context.log.info if outcome.moved or not outcome.refused else context.log.warning)(
            f"{name}: {outcome.message}"
        )
        return MaterializeResult(
            metadata={
                "champion_version": outcome.champion or "none",
                "previous_champion": outcome.previous or "none",
                "considered_version": outcome.version or "none",
                "moved": outcome.moved,
                "outcome": outcome.message,
                "model_uri": registry.model_uri(name) if outcome.champion else "none: no version has passed a gate",
                "history": table(promotion.history(registry, name).drop("gate_summary")),
            }
        )

    return champion_model


# --------------------------------------------------------------------------- partitions from settings


def time_partitions(calendar: Calendar, cadence: str, **kwargs) -> dg.TimeWindowPartitionsDefinition:
    """Daily, weekly or monthly partitions from the data calendar's first day, in its time zone (any key
    format, `fmt`, since the start is given as a datetime)."""
    make = {
        "daily": dg.DailyPartitionsDefinition,
        "weekly": dg.WeeklyPartitionsDefinition,
        "monthly": dg.MonthlyPartitionsDefinition,
    }[cadence]
    start = datetime.combine(calendar.start, datetime.min.time())
    return make(start_date=start, timezone=calendar.timezone, **kwargs)


class PartitionOutOfRange(ValueError):
    """A partition key outside the case's data calendar, with the allowed range and how to move it."""


def require_partitions(partitions_def: dg.PartitionsDefinition, keys: list[str], settings: type[CaseSettings]) -> None:
    """Refuse keys the partitions definition does not hold, naming its range and the setting that moves it
    (Dagster's own error names neither)."""
    known = partitions_def.get_partition_keys(current_time=datetime.now())
    outside = [k for k in keys if k not in set(known)]
    if not outside:
        return
    span = f"{known[0]} .. {known[-1]}" if known else "none yet"
    listed = ", ".join(outside[:5]) + (" ..." if len(outside) > 5 else "")
    raise PartitionOutOfRange(
        f"{settings.case}: partition(s) {listed} are outside the data calendar (partitions {span}). The first "
        f"partition is `calendar.start`, set by {settings.where('calendar.start')}; the last is the latest complete "
        "period before now, so data dated in the future cannot be loaded."
    )


def run_partition_keys(
    context: AssetExecutionContext, partitions_def: dg.PartitionsDefinition, settings: type[CaseSettings]
) -> list[str]:
    """The run's partition keys, its range checked first, as the run's tags give it: Dagster fails on a range
    outside a time partitions definition (or a key in another format) with an internal CheckError or a parsing
    error when the keys are asked for, naming neither the range nor the setting."""
    tags = context.run.tags
    ends = [tags.get(f"dagster/asset_partition_range_{end}") for end in ("start", "end")]
    given = [k for k in [*ends, tags.get("dagster/partition")] if k]
    require_partitions(partitions_def, list(dict.fromkeys(given)), settings)
    keys = list(context.partition_keys)
    require_partitions(partitions_def, keys, settings)
    return keys


# --------------------------------------------------------------------------- raw tables


def raw_pool(case: str) -> str:
    """The pool of a case's raw loads (limit 1, deploy/dagster.yaml): two loads of one case never write at
    once; the second waits. The lake refuses a partition another run wrote meanwhile, should two meet anyway."""
    return f"{case}_raw_load"


def load_raw(
    context: AssetExecutionContext,
    raw: CaseRaw,
    sources,
    settings_class: type[CaseSettings],
    config: dg.Config,
    partitions_def: dg.PartitionsDefinition | None = None,
    inputs: dict | None = None,
) -> RawBatch:
    """The raw rows of a run, through the case's one raw-source seam (lakehouse.common.raw_source): the user's
    files when the sources file lists the case, else its generator with the run's generator settings. Time
    partitions of the run are checked against the calendar first."""
    keys: list[str] = []
    allowed: list[str] = []
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        keys = run_partition_keys(context, partitions_def, settings_class)
        allowed = partitions_def.get_partition_keys(current_time=datetime.now())
    elif partitions_def is not None:
        keys = list(context.partition_keys)
    settings = dict(config.model_dump())
    replace_with_empty = bool(settings.pop("replace_with_empty", False))
    request = Request(
        keys,
        date.today(),
        sources.settings(settings_class),
        allowed,
        replace_with_empty,
        context.log.info,
        inputs or {},
    )
    return raw.source(sources.case(raw.case), settings).load(request)


def natural_order(keys) -> list[str]:
    """Keys sorted with their numbers as numbers: store 2 before store 10."""
    return sorted(keys, key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)])


def register_partitions(instance: dg.DagsterInstance, name: str, keys, max_length: int = MAX_ID_LENGTH) -> list[str]:
    """Add the keys a dynamic partitions definition lacks, in natural order (a range `1...12` then means stores
    1 to 12), after each passed the id rule: a key the lake cannot hold is never registered. The new keys."""
    refused = [(k, p) for k in keys if (p := id_problem(k, max_length=max_length)) is not None]
    if refused:
        key, reason = refused[0]
        raise ValueError(
            f"{len(refused)} partition key(s) of '{name}' refused before registration: {shown(key)} {reason}"
        )
    new = natural_order(set(keys) - set(instance.get_dynamic_partitions(name)))
    instance.add_dynamic_partitions(name, new)
    return new
