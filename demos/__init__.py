"""The demo, case by case: each module materializes its case's graph in the order the
schedules would run it over time (`run`) and prints the key results (`report`).

Runs go through a persistent Dagster instance under $LAKEHOUSE_HOME/dagster, so the UI
(`make ui`) shows every run, materialization, check and alert afterwards.
"""

import os
import shutil
from pathlib import Path

import dagster as dg

from lakehouse.common.home import LakehouseHome

ROOT = Path(__file__).resolve().parent.parent


def prepare_instance(home: Path) -> dg.DagsterInstance:
    dagster_home = LakehouseHome(home).dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dg.DagsterInstance.get()


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run materialize a range of partitions (single-run backfill)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def collect_alerts(instance: dg.DagsterInstance, resources: dict) -> None:
    """Ticks of the alert sensor, as the Dagster daemon would run them, until it has read every finished run."""
    import definitions
    from sensors.alerts import asset_check_alerts

    defs, cursor = definitions.defs(), None
    while True:
        context = dg.build_sensor_context(instance=instance, resources=resources, definitions=defs, cursor=cursor)
        result = asset_check_alerts(context)
        if result.cursor == cursor:
            return
        cursor = result.cursor


def latest_metadata(instance: dg.DagsterInstance, key: list[str]) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
