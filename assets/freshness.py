"""Freshness SLAs as asset checks, and the online copies (Redis) checked against what the lake says they hold.

Freshness: each SLA of the seed is a deadline setting (`<case>.settings.freshness`, lakehouse.common.freshness) and
one check named `freshness` on the table it concerns. The case's freshness schedule (sensors/freshness.py) evaluates
it at the deadline, for the period that deadline expects (the run's `dagster/partition` tag), in a check-only run;
it fails (WARN) when the period is missing, and the alert sensor raises the alert. The check also runs in every run
that materializes its table, for that run's periods: once a late period is filled it passes, which clears the
alert. For the nightly forecast, which is kept by origin rather than partitioned, the deadline expects the origin
`lag_days` before the deadline's day, and a later publication passes once it reaches the origin the last deadline
expected. Evaluating at a given instant (the schedule's tick) rather than "now" is what lets the same check run in
production and in a replay in simulated time.

Online copies: a Redis flush or restart loses what the services read. The fraud feature store marks each warm-up
with an epoch; a new epoch since the previous evaluation means the store lost its data in between (the service
warms it again by itself). The forecast store must hold the latest publication. The store watch sensor
(sensors/freshness.py) probes Redis on each tick and asks for an evaluation when what it finds changed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from lakehouse.common.settings import CaseSettings
from resources import RedisResource, SourcesResource

FRESHNESS = "freshness"
DEADLINE_TAG = "dagster/scheduled_execution_time"  # the scheduler writes the tick's instant on the runs it launches
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
STORE = "online_store"


@dataclass(frozen=True)
class Sla:
    """A freshness SLA: the table, its periods (None: kept by origin), and where its deadline is set."""

    case: str
    name: str  # the field of `<case>.settings.freshness`
    asset: dg.AssetKey
    settings_class: type[CaseSettings]
    partitions: dg.PartitionsDefinition | None

    @property
    def setting(self) -> str:
        return f"{self.case}.settings.freshness.{self.name}"


def slas(case: str) -> list[Sla]:
    """The case's SLAs (imported per case: a case whose settings do not load has none)."""
    if case == "fraud":
        from assets.fraud.partitions import daily
        from lakehouse.fraud.settings import FraudSettings

        return [
            Sla(case, "transactions", dg.AssetKey([case, "transactions"]), FraudSettings, daily),
            Sla(case, "decision_log", dg.AssetKey([case, "decision_log"]), FraudSettings, daily),
        ]
    if case == "forecast":
        from assets.forecast.forecasts import PUBLISHED_KEY
        from lakehouse.forecast.settings import ForecastSettings

        return [Sla(case, "published", PUBLISHED_KEY, ForecastSettings, None)]
    if case == "churn":
        from assets.churn.partitions import weekly_snapshots
        from lakehouse.churn.settings import ChurnSettings

        return [
            Sla(case, "scores", dg.AssetKey([case, "churn_scores"]), ChurnSettings, weekly_snapshots),
            Sla(case, "crm_push", dg.AssetKey([case, "crm_push"]), ChurnSettings, weekly_snapshots),
        ]
    if case == "triage":
        from assets.triage.partitions import monthly
        from lakehouse.triage.settings import TriageSettings

        return [Sla(case, "routes", dg.AssetKey([case, "ticket_routes"]), TriageSettings, monthly)]
    return []


def deadline_of(run: dg.DagsterRun) -> datetime | None:
    """The instant a scheduled run was due (None for a run no schedule launched)."""
    tag = run.tags.get(DEADLINE_TAG)
    return datetime.fromisoformat(tag) if tag else None


def run_periods(run: dg.DagsterRun, partitions: dg.PartitionsDefinition) -> list[str]:
    """The periods a run concerns: its partition, or every partition of its range."""
    if PARTITION_TAG in run.tags:
        return [run.tags[PARTITION_TAG]]
    start, end = (run.tags.get(tag) for tag in RANGE_TAGS)
    if start and end:
        return list(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    return []


def freshness_check(sla: Sla) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=sla.asset,
        name=FRESHNESS,
        description=(
            f"The period the deadline `{sla.setting}` expects is there (WARN when missing at the deadline; a later "
            "evaluation passes once it is filled)."
        ),
    )
    def freshness(context: dg.AssetCheckExecutionContext, sources: SourcesResource) -> dg.AssetCheckResult:
        settings = sources.settings(sla.settings_class)
        deadline = getattr(settings.freshness, sla.name)
        at = deadline_of(context.run)
        if sla.partitions is None:
            return _origin_result(context, sla, deadline, at, settings.calendar.timezone)
        periods = run_periods(context.run, sla.partitions)
        stored = context.instance.get_materialized_partitions(sla.asset)
        missing = [p for p in periods if p not in stored]
        where = f"missing: {', '.join(missing[:5])}" if missing else "materialized"
        return dg.AssetCheckResult(
            passed=not missing,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{sla.setting} ({deadline.describe()}): {', '.join(periods[:3]) or 'no period'} {where}"
            + (f" at the deadline {at:%Y-%m-%d %H:%M %Z}" if at else ""),
            metadata={
                "value": len(missing),
                "threshold": 0,
                "periods": ", ".join(periods[:10]),
                "deadline": at.isoformat() if at else "none: evaluated in the run that materialized the periods",
            },
        )

    return freshness


def _origin_result(context, sla: Sla, deadline, at: datetime | None, timezone: str) -> dg.AssetCheckResult:
    """Forecasts kept by origin: the latest publication reaches the origin the deadline expects (or, evaluated in a
    publication run, the origin the last deadline expected)."""
    key = dg.AssetCheckKey(sla.asset, FRESHNESS)
    if at is not None:
        expected = deadline.expected_origin(at, timezone).isoformat()
    else:
        expected = _last_value(context.instance, key, "expected_origin")
    latest = context.instance.get_latest_materialization_event(sla.asset)
    origin = _metadata(latest.asset_materialization.metadata, "origin") if latest else None
    passed = expected is None or (origin is not None and str(origin) >= expected)
    found = f"latest published origin {origin}" if origin else "nothing published"
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{sla.setting} ({deadline.describe()}): origin {expected or 'none expected yet'} expected, "
        f"{found}" + (f" at the deadline {at:%Y-%m-%d %H:%M %Z}" if at else ""),
        metadata={
            "value": 0 if passed else 1,
            "threshold": 0,
            "expected_origin": expected or "none",
            "published_origin": str(origin) if origin else "none",
            "deadline": at.isoformat() if at else "none: evaluated in a publication run",
        },
    )


def _metadata(metadata, name: str):
    entry = metadata.get(name)
    return None if entry is None else entry.value


def _last_value(instance: dg.DagsterInstance, key: dg.AssetCheckKey, name: str) -> str | None:
    """A metadata value of the latest finished evaluation of a check ("none" counts as absent)."""
    last = last_evaluation(instance, key)
    return None if last is None else last.value(name)


@dataclass(frozen=True)
class Evaluation:
    id: int  # its storage id
    passed: bool
    metadata: dict

    def value(self, name: str) -> str | None:
        value = _metadata(self.metadata, name)
        return None if value in (None, "none") else str(value)


def last_evaluation(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> Evaluation | None:
    """The latest finished evaluation of a check (passed or not), or None."""
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=5):
        event = record.event.dagster_event if record.event is not None else None
        if event is not None and event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            return Evaluation(record.id, evaluation.passed, dict(evaluation.metadata))
    return None


# --------------------------------------------------------------------------- online copies


@dataclass(frozen=True)
class OnlineStore:
    """An online copy in Redis: what it holds now (`probe`), the check that compares it with what it should
    hold, and the assets whose materialization restores it."""

    case: str
    asset: dg.AssetKey
    probe: Callable[[object], str | None]  # Redis client -> its marker (warm-up epoch, publication), None if empty
    repair_assets: tuple[dg.AssetKey, ...]
    description: str

    @property
    def check_key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.asset, STORE)


def online_stores(case: str) -> list[OnlineStore]:
    if case == "fraud":
        from lakehouse.fraud.features_online import EPOCH_KEY

        def epoch(client) -> str | None:
            value = client.get(EPOCH_KEY)
            return value.decode() if value else None

        return [
            OnlineStore(
                case,
                dg.AssetKey([case, "online_features"]),
                epoch,
                (dg.AssetKey([case, "online_features"]),),
                "The Redis feature store kept its data since the previous evaluation: it holds the epoch of a "
                "warm-up, the same as then, or this run warmed it (WARN: decisions in between were degraded).",
            )
        ]
    if case == "forecast":
        from assets.forecast.forecasts import PUBLISHED_KEY
        from lakehouse.forecast.publish import current

        return [
            OnlineStore(
                case,
                PUBLISHED_KEY,
                lambda client: current(client)["run_id"],
                (PUBLISHED_KEY,),
                "Redis holds the latest publication of the forecasts (WARN: the ordering system reads nothing, or an "
                "older night, until it is published again).",
            )
        ]
    return []


def online_store_check(store: OnlineStore) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=store.asset, name=STORE, description=store.description)
    def online_store(context: dg.AssetCheckExecutionContext, redis: RedisResource) -> dg.AssetCheckResult:
        client = redis.client()
        try:
            held = store.probe(client)
        finally:
            client.close()
        latest = context.instance.get_latest_materialization_event(store.asset)
        written_here = latest is not None and latest.run_id == context.run.run_id
        if store.case == "forecast":
            expected = _metadata(latest.asset_materialization.metadata, "run_namespace") if latest else None
            passed = expected is None or held == expected
            reason = (
                "nothing published yet"
                if expected is None
                else f"holds publication {held}"
                if passed
                else f"holds {held or 'nothing'}, not publication {expected}"
            )
        else:
            before = _last_value(context.instance, store.check_key, "held")
            passed = held is not None and (written_here or before is None or held == before)
            reason = (
                "empty: it lost its data and is not warmed yet"
                if held is None
                else f"warmed by this run (epoch {held})"
                if written_here
                else f"epoch {held}, as at the previous evaluation"
                if passed
                else f"warmed again at {held} since the previous evaluation ({before}): it lost its data in between"
            )
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"online store: {reason}",
            metadata={"value": 0 if passed else 1, "threshold": 0, "held": held or "none"},
        )

    return online_store


def checks(case: str) -> list[dg.AssetChecksDefinition]:
    """The freshness and online-store checks of a case that loaded."""
    return [freshness_check(s) for s in slas(case)] + [online_store_check(s) for s in online_stores(case)]
