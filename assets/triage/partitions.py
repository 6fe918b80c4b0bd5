"""Monthly partitions of the triage case, from the data calendar (`calendar.start`, `calendar.timezone`).

The calendar is read here and nowhere else at load time: Dagster needs the partitions (and the
schedules their time zone) when the code location loads, from the sources file the environment names.
"""

from datetime import datetime

import dagster as dg

from lakehouse.common.settings import configured_sources_path
from lakehouse.triage.settings import TriageSettings

CALENDAR = TriageSettings.load(configured_sources_path()).calendar
TIMEZONE = CALENDAR.timezone  # the schedules run in the data calendar's time zone

# One partition per calendar month of tickets, from `calendar.start`; a month opens once it is complete. Keys are
# `YYYY-MM`, as the lake's folders (`month=YYYY-MM`) and the docs write a month.
MONTH_FORMAT = "%Y-%m"
monthly = dg.MonthlyPartitionsDefinition(
    start_date=datetime.combine(CALENDAR.start, datetime.min.time()), timezone=TIMEZONE, fmt=MONTH_FORMAT
)
