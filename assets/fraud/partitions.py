"""Daily partitions of the fraud case, from the data calendar (`calendar.start`, `calendar.timezone`): the one
place the case reads its settings when the code location loads (Dagster needs partitions and schedule time
zones at definition time), through the same accessor as the runs."""

from assets.common import time_partitions
from lakehouse.common.settings import configured_sources_path
from lakehouse.fraud.settings import FraudSettings

CALENDAR = FraudSettings.load(configured_sources_path()).calendar
daily = time_partitions(CALENDAR, "daily")
