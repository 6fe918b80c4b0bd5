from assets.common import time_partitions
from lakehouse.churn.settings import ChurnSettings

# One partition per Monday snapshot from the data calendar's start. end_offset=1 opens the
# current week's partition on Monday morning, when its snapshot (facts up to Sunday night) is complete.
weekly_snapshots = time_partitions(ChurnSettings().calendar, "weekly", day_offset=1, end_offset=1)
