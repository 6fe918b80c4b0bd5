from dagster import WeeklyPartitionsDefinition

from lakehouse.churn.config import WorldConfig

# One partition per Monday snapshot. end_offset=1 opens the current week's partition on
# Monday morning, when its snapshot (facts up to Sunday night) is complete.
weekly_snapshots = WeeklyPartitionsDefinition(
    start_date=WorldConfig.from_env().first_snapshot.isoformat(),
    day_offset=1,
    end_offset=1,
)
