from dagster import MonthlyPartitionsDefinition

from lakehouse.triage.config import WorldConfig

# One partition per calendar month of tickets; a month opens once it is complete.
monthly = MonthlyPartitionsDefinition(start_date=WorldConfig.from_env().first_month.isoformat())
