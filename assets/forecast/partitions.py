"""One dynamic partition per store, registered from the data when the stores table is loaded; and the one
place the case reads its settings when the code location loads (the schedules' time zone and cron).

No data file is read when the code location loads, so a bad stores file can never stop it: the file
is validated by the master-tables asset, and only its valid store ids become partitions.
"""

import dagster as dg

from lakehouse.common.settings import configured_sources_path
from lakehouse.forecast.settings import ForecastSettings

STORES = "forecast_stores"
store_partitions = dg.DynamicPartitionsDefinition(name=STORES)


def every_store(instance: dg.DagsterInstance) -> list[str]:
    return instance.get_dynamic_partitions(STORES)


def store_range_tags(keys: list[str]) -> dict[str, str]:
    """Tags that make one run materialize every given store (the single-run backfill of the UI and the CLI)."""
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def settings_at_load() -> ForecastSettings:
    """The settings of the sources file the environment names, for what Dagster needs at load (schedules)."""
    return ForecastSettings.load(configured_sources_path())
