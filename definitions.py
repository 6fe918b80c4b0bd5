"""The one Dagster code location: every case's assets, checks, jobs, schedules and sensors."""


import dagster as dg

from assets.churn import features, model, raw, reports, scoring
from resources import default_resources
from sensors.alerts import asset_check_alerts
from sensors.churn import JOBS as CHURN_JOBS
from sensors.churn import SCHEDULES as CHURN_SCHEDULES

churn_assets = dg.load_assets_from_modules([raw, features, model, scoring, reports])
churn_checks = dg.load_asset_checks_from_modules([model, scoring, reports])

defs = dg.Definitions(
    assets=churn_assets,
    asset_checks=churn_checks,
    jobs=CHURN_JOBS,
    schedules=CHURN_SCHEDULES,
    sensors=[asset_check_alerts],
    resources=default_resources(),
)
