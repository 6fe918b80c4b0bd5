"""Turns failed asset-check evaluations (WARN and ERROR) and failed runs into alerts.

Non-blocking checks do not fail runs, so a run-failure sensor would miss them. Instead the
sensor reads finished runs (success, failure or cancellation) in the order they finished,
and every failed check evaluation each of them recorded, however many. A run that failed also
alerts (ERROR, check name `materialization_failed`) for each asset partition it was to
materialize and did not, with the run's first error. Its cursor is the
event-log storage id of the last run end it has read, so a tick only reads what finished
since the previous one, at most RUNS_PER_TICK runs (the rest waits for the next tick).

An alert clears (`resolved_at` in the table) when a later evaluation of the same check and
partition passes, or, for `materialization_failed`, when a later run materializes that asset
partition (the retry of a killed run, the catch-up of a late file) or succeeds having skipped it by
design (an asset that needs a champion and finds none).

The alerts table is keyed by the evaluation's run id and storage id within that run's event
log (SQLite numbers each run's events apart), so an evaluation alerts once even if its run is
read again (a reset cursor, a demo ticking by hand); only new alerts reach the webhook. An
evaluation is reported once its run has finished, not while the run goes on.
"""

from datetime import UTC, datetime

import dagster as dg

from lakehouse.common.alerts import Alert, Resolution
from resources import AlertSinkResource, LakehouseResource

RUN_END_EVENTS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 200
PARTITION_TAG = "dagster/partition"
NOT_MATERIALIZED = "materialization_failed"
ERROR_CHARS = 300  # of a failed run's first error, in its alerts
MAX_PLANNED = 100  # partitions of a failed range run alerted one by one; beyond, one alert for the asset


def finished_runs(instance: dg.DagsterInstance, after: int | None, limit: int) -> list[dg.EventLogRecord]:
    """The first `limit` run ends recorded after storage id `after`, in storage order."""
    ends = [
        record
        for event_type in RUN_END_EVENTS
        for record in instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=after), limit=limit, ascending=True
        ).records
    ]
    # Each type's list holds its own first `limit`, so the first `limit` of the union are the first overall.
    return sorted(ends, key=lambda record: record.storage_id)[:limit]


def _metadata_value(metadata, key):
    entry = metadata.get(key)
    return None if entry is None else entry.value


def alert_from_record(record: dg.EventLogRecord, run_partition: str | None) -> Alert:
    evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
    value = _metadata_value(evaluation.metadata, "value")
    threshold = _metadata_value(evaluation.metadata, "threshold")
    return Alert(
        evaluation_id=f"{record.run_id}:{record.storage_id}",
        case=evaluation.asset_key.path[0],
        check_name=evaluation.check_name,
        asset_key=evaluation.asset_key.to_user_string(),
        # Checks evaluated inside a partitioned asset's step carry the run's partition.
        partition=evaluation.partition or run_partition,
        severity=evaluation.severity.value,
        value=float(value) if isinstance(value, (int, float)) else None,
        threshold=None if threshold is None else str(threshold),
        description=evaluation.description or "",
        evaluated_at=datetime.fromtimestamp(record.timestamp, tz=UTC),
    )


def first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first error a run recorded (a step's, else the run's), in one line."""
    for event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for record in instance.get_records_for_run(run_id, of_type=event_type).records:
            event = record.event_log_entry.dagster_event
            error = getattr(event.event_specific_data, "error", None)
            text = (error.message if error else None) or event.message or ""
            if text.strip():
                return " ".join(text.split())[:ERROR_CHARS]
    return "the run failed without an error message"


def _materializations(
    instance: dg.DagsterInstance, run_id: str, event_type, unpartitioned: frozenset[str] = frozenset()
) -> set[tuple[str, str | None]]:
    """(asset, partition) of a run's materialization events, or of its planned ones (a range run plans a subset:
    each partition of it, up to MAX_PLANNED, else the asset alone). Dagster plans an unpartitioned asset of a
    partitioned run with the run's partitions, and materializes it with none: it is the asset alone."""
    found = set()
    for record in instance.get_records_for_run(run_id, of_type=event_type).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        asset = event.asset_key.to_user_string()
        if asset in unpartitioned:
            found.add((asset, None))
            continue
        subset = getattr(event.event_specific_data, "partitions_subset", None)
        keys = list(subset.get_partition_keys()) if subset is not None else []
        if keys and len(keys) <= MAX_PLANNED:
            found |= {(asset, key) for key in keys}
        else:
            found.add((asset, event.partition))
    return found


def run_outcome(
    instance: dg.DagsterInstance,
    run_end: dg.EventLogRecord,
    run: dg.DagsterRun | None,
    unpartitioned: frozenset[str] = frozenset(),
) -> tuple[list[Alert], list[Resolution]]:
    """A failed run's alerts, one per asset partition it was to materialize and did not; the resolutions of the
    asset partitions any finished run materialized, and of those a successful run planned and skipped by design
    (an asset that needs a champion and finds none) (`unpartitioned`: the assets without partitions)."""
    done = _materializations(instance, run_end.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)
    planned = _materializations(
        instance, run_end.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, unpartitioned
    )
    failed = run_end.event_log_entry.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
    when = datetime.fromtimestamp(run_end.timestamp, tz=UTC)
    resolutions = [
        Resolution(f"{run_end.run_id}:{asset}:{partition}", NOT_MATERIALIZED, asset, partition, when)
        for asset, partition in sorted(done if failed else done | planned, key=str)
    ]
    if not failed:
        return [], resolutions
    missing = sorted(planned - done, key=str)
    if not missing:
        return [], resolutions
    error = first_error(instance, run_end.run_id)
    job = run.job_name if run else "unknown job"
    alerts = [
        Alert(
            evaluation_id=f"{run_end.run_id}:{asset}:{partition}",
            case=asset.split("/")[0],
            check_name=NOT_MATERIALIZED,
            asset_key=asset,
            partition=partition,
            severity="ERROR",
            value=None,
            threshold=None,
            description=f"run {run_end.run_id[:8]} of {job} failed: {error}",
            evaluated_at=when,
        )
        for asset, partition in missing
    ]
    return alerts, resolutions


def read_evaluations(
    instance: dg.DagsterInstance,
    check_keys,
    cursor: str | None = None,
    runs_per_tick: int = RUNS_PER_TICK,
    asset_keys=None,
    unpartitioned: frozenset[str] = frozenset(),
) -> tuple[list[Alert], list[Resolution], str | None]:
    """Alerts for the failed evaluations of `check_keys`, and for the failed runs, among the runs that finished
    after `cursor`; the passing evaluations and materializations that clear earlier alerts; and the cursor to
    resume from (unchanged when no run finished). Failed runs alert for the assets of `asset_keys` (default: any);
    `unpartitioned` names the assets without partitions."""
    after = int(cursor) if cursor else None
    alerts: list[Alert] = []
    resolutions: list[Resolution] = []
    for run_end in finished_runs(instance, after, runs_per_tick):
        run = instance.get_run_by_id(run_end.run_id)
        run_partition = run.tags.get(PARTITION_TAG) if run else None
        failed, materialized = run_outcome(instance, run_end, run, unpartitioned)
        alerts += [a for a in failed if asset_keys is None or dg.AssetKey.from_user_string(a.asset_key) in asset_keys]
        resolutions += materialized
        evaluations = instance.get_records_for_run(
            run_end.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        for record in evaluations:
            evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
            if evaluation.asset_check_key not in check_keys:
                continue
            if evaluation.passed:
                resolutions.append(
                    Resolution(
                        evaluation_id=f"{record.run_id}:{record.storage_id}",
                        check_name=evaluation.check_name,
                        asset_key=evaluation.asset_key.to_user_string(),
                        partition=evaluation.partition or run_partition,
                        evaluated_at=datetime.fromtimestamp(record.timestamp, tz=UTC),
                    )
                )
            else:
                alerts.append(alert_from_record(record, run_partition))
        after = run_end.storage_id
    return alerts, resolutions, None if after is None else str(after)


def failed_evaluations(
    instance: dg.DagsterInstance, check_keys, cursor: str | None = None, runs_per_tick: int = RUNS_PER_TICK
) -> tuple[list[Alert], str | None]:
    """The alerts of `read_evaluations` and its cursor."""
    alerts, _, cursor = read_evaluations(instance, check_keys, cursor, runs_per_tick)
    return alerts, cursor


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Alerts (table + optional Slack webhook) for every failed asset check, WARN or ERROR, and every asset a "
        "failed run did not materialize, once its run has finished; later passes and materializations clear them."
    ),
)
def asset_check_alerts(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource, alerts: AlertSinkResource):
    graph = context.repository_def.asset_graph
    keys = graph.get_all_asset_keys()
    unpartitioned = frozenset(k.to_user_string() for k in keys if not graph.get(k).is_partitioned)
    found, resolutions, cursor = read_evaluations(
        context.instance, graph.asset_check_keys, context.cursor, asset_keys=keys, unpartitioned=unpartitioned
    )
    new = alerts.send(lakehouse, found)
    cleared = alerts.resolve(lakehouse, resolutions)
    for alert in new:
        context.log.warning(
            f"ALERT {alert.severity} {alert.case}/{alert.check_name} on {alert.asset_key} [{alert.partition}]: "
            f"value={alert.value} threshold={alert.threshold}"
        )
    if cleared:
        context.log.info(f"{len(cleared)} alert(s) cleared by a passing evaluation of the same check and partition")
    return dg.SensorResult(skip_reason=f"{len(new)} new alerts, {len(cleared)} cleared", cursor=cursor)
