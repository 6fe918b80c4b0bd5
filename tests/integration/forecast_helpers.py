"""A store-partitioned forecast job on the multiprocess executor, launched one process per
partition like a run launcher does (`python -m tests.integration.forecast_helpers <store>`)."""

import sys

import dagster as dg


def forecast_backfill_job():
    from assets.forecast import ASSETS, CHECKS
    from assets.forecast.models import SEGMENTS_KEY
    from assets.forecast.partitions import store_partitions
    from resources import default_resources

    job = dg.define_asset_job(
        "forecast_store_backfill",
        selection=dg.AssetSelection.assets(SEGMENTS_KEY),
        partitions_def=store_partitions,
        executor_def=dg.multiprocess_executor,
    )
    defs = dg.Definitions(assets=[*ASSETS, *CHECKS], jobs=[job], resources=default_resources())
    return defs.resolve_job_def("forecast_store_backfill")


def main(partition: str) -> int:
    with dg.execute_job(dg.reconstructable(forecast_backfill_job), dg.DagsterInstance.get(), tags={"dagster/partition": partition}) as result:
        logs = "\n".join(e.message or "" for e in result.all_events)
    print("LOCK" if "lock" in logs.lower() else "NO-LOCK")
    print("SUCCESS" if result.success else "FAILURE")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
