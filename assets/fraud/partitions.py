from dagster import DailyPartitionsDefinition

from lakehouse.fraud.config import WorldConfig

# One partition per calendar day (UTC) of transactions, from the first day of the world.
daily = DailyPartitionsDefinition(start_date=WorldConfig.from_env().start_date.isoformat())
