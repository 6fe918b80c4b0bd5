"""Daily partitions of the fraud case, from the data calendar (`calendar.start`, `calendar.timezone`)."""

from assets.common import time_partitions
from lakehouse.fraud.settings import FraudSettings

# Built when the code location loads: Dagster needs the partitions at definition time.
daily = time_partitions(FraudSettings().calendar, "daily")
