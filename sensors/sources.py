"""The source-change sensor: a corrected past period or a period that arrived late is reloaded, and everything
downstream of it refreshed, with no one asking.

For each case that reads the user's files (the sources file lists it), the sensor maps the watched tables as a load
would (no validation: that is the load's job) and takes, per partition, a fingerprint of the rows (row count and an
order-free hash: lakehouse.common.raw_source). Each finished run that loaded the case's raw table records the prints
of the partitions it covered (whether it succeeded or was refused). A partition whose print differs from the one its
last load saw (a corrected file; a period whose file came after its load was tried and refused) gets a run of the
case's refresh job: the raw partition, then what is computed from it, with the later partitions whose windows
reach back to it (a week's tickets count in the next 18 churn snapshots, a day's payments in 38 days of fraud
features). A refused file asks for nothing more until it
changes again, so a bad file is tried once per version. Periods newer than the latest loaded one are left to the
case's schedule. The folder's file names, sizes and times are checked first: an unchanged folder is not read.
"""

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from assets.common import natural_order
from assets.freshness import PARTITION_TAG, RANGE_TAGS
from lakehouse.common.raw_source import (
    fingerprint_scheme,
    loaded_fingerprints,
    partition_fingerprints,
    record_fingerprints,
)
from lakehouse.common.settings import CaseSettings
from lakehouse.common.sources import CaseSource, read_mapped
from resources import LakehouseResource, SourcesResource
from sensors.alerts import finished_runs

CHANGE_TAG = "lakehouse/source_change"  # "corrected" or "arrived late": why the sensor asked for the run
RUNS_PER_TICK = 200


@dataclass(frozen=True)
class LaterFacts:
    """Columns of a table's rows that a later event fills (a ticket's closure and its satisfaction score). They are
    printed in the partition of that event, with the row's key, and left out of the row's own print: a ticket closed
    after its week was loaded is news of the closing week, not a correction of the opening one."""

    at: str  # the event's column
    columns: tuple[str, ...]  # the columns it fills, `at` included
    key: str


@dataclass(frozen=True)
class Watched:
    """A case's raw table as the sensor watches it."""

    case: str
    asset: dg.AssetKey  # the raw table whose loads record what they read
    tables: dict[str, str]  # mapped table -> the column that places a row in a partition
    partitions: dg.PartitionsDefinition
    refresh: object  # a job (define_asset_job): reloads partitions and refreshes what is computed from them
    settings_class: type[CaseSettings]
    ranges: bool = False  # contiguous partitions go in one run (every partitioned asset of `refresh` is single-run)
    whole: bool = False  # any change refreshes every partition in one run (a nightly that loads every store)
    offset: int = 0  # a row of period p first counts in period p + offset (facts of a week: next Monday's snapshot)
    # How many periods from p + offset a row counts in (windows over past periods): a corrected period refreshes
    # them all, up to the latest loaded.
    reach: Callable[[CaseSettings], int] = lambda settings: 1
    later: dict[str, LaterFacts] = field(default_factory=dict)  # table -> the columns a later event fills
    # A date column for partitions that are not periods (forecast's stores): rows dated after the latest date a
    # partition's last load saw are that partition's news, not a correction of it (a store's sales grow each night).
    horizon: str | None = None


def watched(case: str) -> Watched | None:
    """What the sensor watches in a case that loaded (imported per case)."""
    if case == "fraud":
        from assets.fraud.partitions import daily
        from lakehouse.fraud.settings import FraudSettings

        keys = [dg.AssetKey([case, n]) for n in ("transactions", "transaction_features", "scores")]
        refresh = dg.define_asset_job(
            "fraud_source_refresh",
            selection=dg.AssetSelection.assets(*keys),
            description="Reload days whose source changed, then the features and the days' batch scores.",
        )
        return Watched(
            case,
            keys[0],
            {"transactions": "ts"},
            daily,
            refresh,
            FraudSettings,
            ranges=True,
            reach=lambda settings: settings.features.reach_days,
        )
    if case == "triage":
        from assets.triage.partitions import monthly
        from assets.triage.raw import CLEAN_KEY
        from lakehouse.triage.settings import TriageSettings
        from sensors.triage import triage_monthly_job

        tables = {"tickets": "created_at", "agent_labels": "labelled_at"}
        return Watched(case, CLEAN_KEY, tables, monthly, triage_monthly_job, TriageSettings)
    if case == "churn":
        from assets.churn.partitions import weekly_snapshots
        from lakehouse.churn.settings import ChurnSettings
        from sensors.churn import churn_weekly_scoring_job

        tables = {"usage_daily": "activity_date", "support_tickets": "opened_at", "renewals": "renewal_date"}
        return Watched(
            case,
            dg.AssetKey([case, "usage_daily"]),
            tables,
            weekly_snapshots,
            churn_weekly_scoring_job,
            ChurnSettings,
            ranges=True,
            offset=1,
            # a week's usage counts in the next `lookback_weeks` snapshots, a ticket in the next 18 (open tickets
            # opened within 120 days, satisfaction of closures within 90: churn_features.sql)
            reach=lambda settings: max(settings.lookback_weeks, 18),
            later={"support_tickets": LaterFacts("closed_at", ("closed_at", "csat"), "ticket_id")},
        )
    if case == "forecast":
        from assets.forecast.partitions import store_partitions
        from assets.forecast.raw import SALES_KEY
        from lakehouse.forecast.settings import ForecastSettings
        from sensors.forecast import forecast_nightly_job

        return Watched(
            case,
            SALES_KEY,
            {"sales": "store_id"},
            store_partitions,
            forecast_nightly_job,
            ForecastSettings,
            whole=True,
            horizon="date",
        )
    return None


def folder_signature(folder: Path) -> str:
    """Names, sizes and modification times of every file under the folder."""
    entries = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            entries.append(f"{os.path.relpath(os.path.join(root, name), folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


def source_prints(
    watch: Watched, source: CaseSource, instance: dg.DagsterInstance, horizons: dict[str, str] | None = None
) -> dict[str, str]:
    """The print of every partition of the watched tables, as the mapping reads them now; with `horizons`
    (partition -> the latest date its last load saw), of the rows up to that date only."""
    scheme = fingerprint_scheme()
    keys = _partition_keys(watch, instance)
    parts: dict[str, list[str]] = {}
    for table in watch.tables:
        mapped = read_mapped(source, table)
        if mapped is None or mapped.frame.height == 0:
            continue
        for partition, fingerprints in table_prints(watch, table, mapped.frame, horizons or {}).items():
            if partition in keys:
                parts.setdefault(partition, []).extend(fingerprints)
    return {p: f"{scheme}|{';'.join(sorted(v))}" for p, v in parts.items()}


def horizons_of(prints: dict[str, str | None]) -> dict[str, str]:
    """The latest date each recorded print saw (`table@date=...` of a watch with a horizon)."""
    return {
        p: max(m.split("=", 1)[0].split("@")[1] for m in fp.split("|", 1)[1].split(";"))
        for p, fp in prints.items()
        if fp and "@" in fp
    }


def table_prints(
    watch: Watched, table: str, frame: pl.DataFrame, horizons: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """One table's prints per partition: its rows placed by the watched column, and the columns a later event
    fills placed by that event; with a horizon, each partition's rows up to its date in `horizons`, the print
    labelled with the latest date it holds."""
    column, later = watch.tables[table], watch.later.get(table)
    if column not in frame.columns:
        return {}
    if watch.horizon is not None and watch.horizon in frame.columns:
        return _horizon_prints(watch, table, frame, horizons or {})
    placed = [(table, column, frame.drop(later.columns, strict=False) if later else frame)]
    if later and later.at in frame.columns:
        filled = frame.filter(pl.col(later.at).is_not_null())
        placed.append(
            (
                f"{table}.{later.at}",
                later.at,
                filled.select(later.key, *(c for c in later.columns if c in filled.columns)),
            )
        )
    parts: dict[str, list[str]] = {}
    for label, at, rows in placed:
        if rows.height == 0:
            continue
        for partition, fingerprint in partition_fingerprints(rows, _partitions_of(watch, rows[at])).items():
            parts.setdefault(partition, []).append(f"{label}={fingerprint}")
    return parts


def _horizon_prints(watch: Watched, table: str, frame: pl.DataFrame, horizons: dict[str, str]) -> dict[str, list[str]]:
    day = pl.col(watch.horizon).cast(pl.Date).cast(pl.String)
    rows = frame.with_columns(_partition=_partitions_of(watch, frame[watch.tables[table]]), _day=day)
    seen = pl.col("_partition").replace_strict(horizons, default=None, return_dtype=pl.String)
    rows = rows.filter(seen.is_null() | (pl.col("_day") <= seen))
    parts: dict[str, list[str]] = {}
    for (partition,), group in rows.group_by("_partition"):
        if partition is None:
            continue
        (fingerprint,) = partition_fingerprints(group.drop("_partition", "_day"), group["_partition"]).values()
        parts[partition] = [f"{table}@{group['_day'].max()}={fingerprint}"]
    return parts


def _partition_keys(watch: Watched, instance: dg.DagsterInstance) -> set[str]:
    if isinstance(watch.partitions, dg.DynamicPartitionsDefinition):
        return set(instance.get_dynamic_partitions(watch.partitions.name))
    return set(watch.partitions.get_partition_keys(current_time=datetime.now(UTC)))


def _partitions_of(watch: Watched, values: pl.Series) -> pl.Series:
    """Each row's partition key: the value itself (dynamic partitions), or the time window holding its day (the
    case's daily, weekly and monthly windows start at midnight in the calendar's time zone)."""
    if not isinstance(watch.partitions, dg.TimeWindowPartitionsDefinition):
        return values.cast(pl.String)
    zone = ZoneInfo(watch.partitions.timezone or "UTC")
    if values.dtype == pl.Date:
        days = values
    else:
        stamps = values if values.dtype.time_zone else values.dt.replace_time_zone("UTC")  # naive times are UTC
        days = stamps.dt.convert_time_zone(str(zone)).dt.date()
    ordered = watch.partitions.get_partition_keys(current_time=datetime.now(UTC))
    index = {k: i for i, k in enumerate(ordered)}
    mapping = {}
    for day in days.unique().drop_nulls().to_list():
        midnight = datetime.combine(day, time.min, tzinfo=zone).timestamp()
        key = watch.partitions.get_partition_key_for_timestamp(midnight)
        shifted = index[key] + watch.offset if key in index else None
        mapping[day] = ordered[shifted] if shifted is not None and 0 <= shifted < len(ordered) else None
    return days.replace_strict(mapping, default=None, return_dtype=pl.String)


def changed_partitions(
    prints: dict[str, str], loaded: dict[str, str | None], order: list[str], reach: int = 1
) -> dict[str, str]:
    """Partitions to reload, with why: a print that differs from the last load's ("corrected", or "arrived late"
    when that load found no row), and the `reach` - 1 partitions after it whose windows see its rows, for
    partitions up to the latest one loaded; prints of another hashing scheme are not comparable and ask for
    nothing."""
    if not loaded:
        return {}
    position = {k: i for i, k in enumerate(order)}
    latest = max((position[p] for p in loaded if p in position), default=-1)
    changed = {}
    for partition, fingerprint in prints.items():
        if position.get(partition, latest + 1) > latest:
            continue
        before = loaded.get(partition)
        if before is not None and before.split("|", 1)[0] != fingerprint.split("|", 1)[0]:
            continue
        if before != fingerprint:
            changed[partition] = "corrected" if before else "arrived late"
    for partition, why in sorted(changed.items(), key=lambda item: position[item[0]]):
        for later in order[position[partition] + 1 : min(position[partition] + reach, latest + 1)]:
            changed.setdefault(later, why)
    return changed


def requests(watch: Watched, changed: dict[str, str], order: list[str], prints: dict[str, str]) -> list:
    """The refresh runs: one per partition, one per contiguous range, or one over every partition."""
    if not changed:
        return []
    digest = hashlib.sha256(json.dumps({p: prints.get(p) for p in sorted(changed)}).encode()).hexdigest()[:12]
    why = ", ".join(sorted(set(changed.values())))
    if watch.whole:
        return [_range_request(order[0], order[-1], f"all-{digest}", why)]
    keys = [k for k in order if k in changed]
    if not watch.ranges:
        return [dg.RunRequest(run_key=f"{k}-{digest}", partition_key=k, tags={CHANGE_TAG: changed[k]}) for k in keys]
    position = {k: i for i, k in enumerate(order)}
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or position[keys[i]] != position[keys[i - 1]] + 1:
            first, last = keys[start], keys[i - 1]
            if first == last:
                runs.append(dg.RunRequest(run_key=f"{first}-{digest}", partition_key=first, tags={CHANGE_TAG: why}))
            else:
                runs.append(_range_request(first, last, f"{first}-{last}-{digest}", why))
            start = i
    return runs


def _range_request(first: str, last: str, run_key: str, why: str) -> dg.RunRequest:
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    return dg.RunRequest(run_key=run_key, tags={**tags, CHANGE_TAG: why})


def _loads(instance: dg.DagsterInstance, run_end: dg.EventLogRecord, asset: dg.AssetKey) -> bool:
    """Whether the run planned to load the watched table."""
    planned = instance.get_records_for_run(
        run_end.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    return any(r.event_log_entry.dagster_event.asset_key == asset for r in planned)


def source_change_sensor(watch: Watched) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{watch.case}_source_changes",
        job=watch.refresh,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Reloads the {watch.case} partitions whose source changed since their load (a corrected file) or "
            "arrived after it (a late file), and refreshes what is computed from them."
        ),
    )
    def source_changes(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource, sources: SourcesResource):
        source = sources.case(watch.case)
        if source is None:
            return dg.SkipReason(f"the {watch.case} case runs on its generator: no file to watch")
        state = json.loads(context.cursor) if context.cursor else {"after": None, "signature": None}
        ends = finished_runs(context.instance, state["after"], RUNS_PER_TICK)
        loads = [end for end in ends if _loads(context.instance, end, watch.asset)]
        signature = folder_signature(source.folder)
        after = ends[-1].storage_id if ends else state["after"]
        if not loads and signature == state["signature"]:
            context.update_cursor(json.dumps({"after": after, "signature": signature}))
            return dg.SkipReason("no change in the source folder and no new load")
        prints = source_prints(watch, source, context.instance)
        order = _order(watch, context.instance)
        for end in loads:
            periods = _periods(context.instance.get_run_by_id(end.run_id), order)
            record_fingerprints(lakehouse.paths.ops_db, watch.case, {p: prints.get(p) for p in periods}, end.run_id)
        reach = watch.reach(sources.settings(watch.settings_class))
        loaded = loaded_fingerprints(lakehouse.paths.ops_db, watch.case)
        if watch.horizon is not None:  # compared up to what each partition's last load saw
            prints = source_prints(watch, source, context.instance, horizons_of(loaded))
        changed = changed_partitions(prints, loaded, order, reach)
        context.update_cursor(json.dumps({"after": after, "signature": signature}))
        if not changed:
            return dg.SkipReason(f"{len(prints)} partition(s) of the source as loaded")
        context.log.info(
            f"{len(changed)} partition(s) to reload: "
            + ", ".join(f"{p} ({why})" for p, why in list(changed.items())[:10])
        )
        return requests(watch, changed, order, prints)

    return source_changes


def _periods(run: dg.DagsterRun | None, order: list[str]) -> list[str]:
    """The partitions a run covered: its partition, or its range in the partitions' order."""
    if run is None:
        return []
    if PARTITION_TAG in run.tags:
        return [run.tags[PARTITION_TAG]]
    start, end = (run.tags.get(tag) for tag in RANGE_TAGS)
    position = {k: i for i, k in enumerate(order)}
    if start in position and end in position:
        return order[position[start] : position[end] + 1]
    return []


def _order(watch: Watched, instance: dg.DagsterInstance) -> list[str]:
    if isinstance(watch.partitions, dg.DynamicPartitionsDefinition):
        return natural_order(instance.get_dynamic_partitions(watch.partitions.name))
    return list(watch.partitions.get_partition_keys(current_time=datetime.now(UTC)))


def operations(case: str) -> tuple[list, list]:
    """The refresh job and the sensor of a case that loaded."""
    watch = watched(case)
    if watch is None:
        return [], []
    jobs = [watch.refresh] if watch.case == "fraud" else []  # the other cases refresh through their own job
    return jobs, [source_change_sensor(watch)]
