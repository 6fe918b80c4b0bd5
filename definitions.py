"""The one Dagster code location: every case's assets, checks, jobs, schedules and sensors."""


import dagster as dg

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

CASE_ASSETS = [assets.churn, assets.forecast, assets.fraud, assets.triage]
CASE_OPERATIONS = [sensors.churn, sensors.forecast, sensors.fraud, sensors.triage]

defs = dg.Definitions(
    assets=[a for case in CASE_ASSETS for a in case.ASSETS],
    asset_checks=[c for case in CASE_ASSETS for c in case.CHECKS],
    jobs=[j for case in CASE_OPERATIONS for j in case.JOBS],
    schedules=[s for case in CASE_OPERATIONS for s in case.SCHEDULES],
    sensors=[asset_check_alerts, *(s for case in CASE_OPERATIONS for s in case.SENSORS)],
    resources=default_resources(),
)
