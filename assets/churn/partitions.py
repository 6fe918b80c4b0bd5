"""The churn calendar, read once when the code location loads: partitions and schedules need it before any run."""

from assets.common import time_partitions
from lakehouse.churn.settings import ChurnSettings
from lakehouse.common.settings import configured_sources_path

CALENDAR = ChurnSettings.load(configured_sources_path()).calendar
TIMEZONE = CALENDAR.timezone

# One partition per Monday snapshot from the data calendar's start. end_offset=1 opens the
# current week's partition on Monday morning, when its snapshot (facts up to Sunday night) is complete.
weekly_snapshots = time_partitions(CALENDAR, "weekly", day_offset=1, end_offset=1)
