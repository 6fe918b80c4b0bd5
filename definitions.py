"""The one Dagster code location: every case's assets, checks, jobs, schedules and sensors.

`defs` is built when Dagster (or a test) asks for it, not at import: importing this module
costs no more than importing Dagster, and the dbt manifest and each case's modules are read
once, by whoever loads the code location.
"""

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    import assets.churn
    import assets.forecast
    import assets.fraud
    import assets.triage
    import sensors.churn
    import sensors.forecast
    import sensors.fraud
    import sensors.triage
    from resources import default_resources
    from sensors.alerts import asset_check_alerts

    cases = [assets.churn, assets.forecast, assets.fraud, assets.triage]
    operations = [sensors.churn, sensors.forecast, sensors.fraud, sensors.triage]
    return dg.Definitions(
        assets=[a for case in cases for a in case.ASSETS],
        asset_checks=[c for case in cases for c in case.CHECKS],
        jobs=[j for case in operations for j in case.JOBS],
        schedules=[s for case in operations for s in case.SCHEDULES],
        sensors=[asset_check_alerts, *(s for case in operations for s in case.SENSORS)],
        resources=default_resources(),
    )
