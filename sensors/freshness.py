"""The freshness schedules (one per SLA, at its deadline) and the online store watch.

A freshness schedule ticks at its deadline (`<case>.settings.freshness.<name>`, in the calendar's time zone) and
launches a check-only run of the SLA's `freshness` check for the period the deadline expects: the latest period of
the table's partitions open at the tick, which is the one the case's own schedule asked for (yesterday, this
Monday's snapshot, the month that just ended). Like the case's schedules, they start stopped: turn them on with
them (`make ui`).

The store watch probes a case's online copy in Redis on each tick (cheap: one key) and asks for an evaluation of
its `online_store` check when what Redis holds differs from what the last evaluation saw: a flush or a restart is
then an alert within one tick. When the last evaluation failed and the store is still empty (or, for forecasts,
still without the latest publication), it launches the case's job that restores it; when the service restored it by
itself, a new evaluation passes. Either way the alert clears.
"""

import dagster as dg

from assets.freshness import PARTITION_TAG, OnlineStore, Sla, last_evaluation, online_stores, slas
from lakehouse.common.settings import configured_sources_path
from resources import RedisResource


def freshness_job(sla: Sla):
    return dg.define_asset_job(
        f"{sla.case}_freshness_{sla.name}",
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(sla.asset, "freshness")),
        executor_def=dg.in_process_executor,  # one cheap check: no process of its own
        description=f"Whether the period the deadline `{sla.setting}` expects is there.",
    )


def freshness_schedule(sla: Sla, job) -> dg.ScheduleDefinition:
    settings = sla.settings_class.load(configured_sources_path())  # the cron and time zone are needed at load
    deadline = getattr(settings.freshness, sla.name)

    @dg.schedule(
        name=f"{sla.case}_freshness_{sla.name}_schedule",
        job=job,
        cron_schedule=deadline.cron(),
        execution_timezone=settings.calendar.timezone,
        description=f"At the deadline `{sla.setting}`: is the period it expects there?",
    )
    def at_deadline(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time
        if sla.partitions is None:
            return dg.RunRequest(run_key=f"{sla.name}-{when:%Y-%m-%dT%H%M}")
        periods = sla.partitions.get_partition_keys(current_time=when)
        if not periods:
            return dg.SkipReason(f"no {sla.case} period has opened by {when:%Y-%m-%d %H:%M}")
        return dg.RunRequest(run_key=f"{sla.name}-{periods[-1]}", tags={PARTITION_TAG: periods[-1]})

    return at_deadline


def check_job(store: OnlineStore):
    return dg.define_asset_job(
        f"{store.case}_online_store_check",
        selection=dg.AssetSelection.checks(store.check_key),
        executor_def=dg.in_process_executor,  # one probe of Redis: no process of its own
        description="Whether the Redis copy holds what it should (see the check).",
    )


def store_watch(store: OnlineStore, check, repair) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{store.case}_online_store_watch",
        jobs=[check, repair],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Probes the {store.case} online copy in Redis each tick: a change since the last evaluation of its "
            "`online_store` check asks for one (a flush alerts within one tick); a store still lost is restored."
        ),
    )
    def watch(context: dg.SensorEvaluationContext, redis: RedisResource):
        client = redis.client()
        try:
            held = store.probe(client)
        finally:
            client.close()
        last = last_evaluation(context.instance, store.check_key)
        if last is None:
            if held is None:
                return dg.SkipReason("the store has never been written: nothing to watch yet")
            return dg.RunRequest(run_key=f"first-{held}", job_name=check.name)
        if last.passed and held == last.value("held"):
            return dg.SkipReason(f"the store holds {held}, as at the last evaluation")
        if last.passed:
            return dg.RunRequest(run_key=f"changed-{last.id}-{held}", job_name=check.name)
        if held is None or (store.case == "forecast" and held == last.value("held")):
            return dg.RunRequest(
                run_key=f"repair-{last.id}", job_name=repair.name, asset_selection=list(store.repair_assets)
            )
        return dg.RunRequest(run_key=f"again-{last.id}-{held}", job_name=check.name)

    return watch


def operations(case: str) -> tuple[list, list, list]:
    """The jobs, schedules and sensors of a case that loaded."""
    jobs, schedules, sensors = [], [], []
    for sla in slas(case):
        job = freshness_job(sla)
        jobs.append(job)
        schedules.append(freshness_schedule(sla, job))
    for store in online_stores(case):
        check = check_job(store)
        repair = _repair_job(store)
        jobs.append(check)
        sensors.append(store_watch(store, check, repair))
    return jobs, schedules, sensors


def _repair_job(store: OnlineStore):
    """The case's own job that writes the store again."""
    if store.case == "fraud":
        from sensors.fraud import fraud_feature_store_job

        return fraud_feature_store_job
    from sensors.forecast import forecast_publish_job

    return forecast_publish_job
