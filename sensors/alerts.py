"""Turns failed asset-check evaluations (WARN and ERROR) into alerts.

Non-blocking checks do not fail runs, so a run-failure sensor would miss them: each tick
reads the latest failed executions of every check in the code location. The alerts table
is keyed by the execution's id, so an evaluation alerts once however often it is read;
only new alerts reach the webhook.
"""

from datetime import datetime, timezone

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from lakehouse.common.alerts import Alert
from resources import AlertSinkResource, LakehouseResource

RECENT_PER_CHECK = 50


def _metadata_value(metadata, key):
    entry = metadata.get(key)
    return None if entry is None else entry.value


def alert_from_record(record, partition: str | None) -> Alert:
    evaluation = record.event.dagster_event.event_specific_data
    value = _metadata_value(evaluation.metadata, "value")
    threshold = _metadata_value(evaluation.metadata, "threshold")
    return Alert(
        evaluation_id=str(record.id),
        case=evaluation.asset_key.path[0],
        check_name=evaluation.check_name,
        asset_key=evaluation.asset_key.to_user_string(),
        partition=evaluation.partition or partition,
        severity=evaluation.severity.value,
        value=float(value) if isinstance(value, (int, float)) else None,
        threshold=None if threshold is None else str(threshold),
        description=evaluation.description or "",
        evaluated_at=datetime.fromtimestamp(record.event.timestamp, tz=timezone.utc),
    )


def failed_evaluations(instance: dg.DagsterInstance, check_keys) -> list[Alert]:
    alerts = []
    run_partitions: dict[str, str | None] = {}  # checks evaluated inside a partitioned asset's step carry the run's partition
    for check_key in check_keys:
        records = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=RECENT_PER_CHECK, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        for record in records:
            if record.event is None:
                continue
            if record.run_id not in run_partitions:
                run = instance.get_run_by_id(record.run_id)
                run_partitions[record.run_id] = run.tags.get("dagster/partition") if run else None
            alerts.append(alert_from_record(record, record.partition or run_partitions[record.run_id]))
    return alerts


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (table + optional Slack webhook) for every failed asset check, WARN or ERROR.",
)
def asset_check_alerts(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource, alerts: AlertSinkResource):
    check_keys = context.repository_def.asset_graph.asset_check_keys
    new = alerts.send(lakehouse, failed_evaluations(context.instance, check_keys))
    for alert in new:
        context.log.warning(
            f"ALERT {alert.severity} {alert.case}/{alert.check_name} on {alert.asset_key} [{alert.partition}]: "
            f"value={alert.value} threshold={alert.threshold}"
        )
    return dg.SkipReason(f"{len(new)} new alerts")
