"""Turns failed asset-check evaluations (WARN and ERROR) into alerts.

Non-blocking checks do not fail runs, so a run-failure sensor would miss them. A later passing
evaluation of the same check and partition clears the alert (`resolved_at` in the table). Instead the
sensor reads finished runs (success, failure or cancellation) in the order they finished,
and every failed check evaluation each of them recorded, however many. Its cursor is the
event-log storage id of the last run end it has read, so a tick only reads what finished
since the previous one, at most RUNS_PER_TICK runs (the rest waits for the next tick).

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


def read_evaluations(
    instance: dg.DagsterInstance, check_keys, cursor: str | None = None, runs_per_tick: int = RUNS_PER_TICK
) -> tuple[list[Alert], list[Resolution], str | None]:
    """Alerts for the failed evaluations of `check_keys` in the runs that finished after `cursor`, the
    passing evaluations that clear earlier alerts, and the cursor to resume from (unchanged when no run
    finished)."""
    after = int(cursor) if cursor else None
    alerts: list[Alert] = []
    resolutions: list[Resolution] = []
    for run_end in finished_runs(instance, after, runs_per_tick):
        run = instance.get_run_by_id(run_end.run_id)
        run_partition = run.tags.get(PARTITION_TAG) if run else None
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
        "Alerts (table + optional Slack webhook) for every failed asset check, WARN or ERROR, "
        "once its run has finished."
    ),
)
def asset_check_alerts(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource, alerts: AlertSinkResource):
    check_keys = context.repository_def.asset_graph.asset_check_keys
    found, resolutions, cursor = read_evaluations(context.instance, check_keys, context.cursor)
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
