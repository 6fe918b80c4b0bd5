"""Case 3, real-time fraud scoring: rules -> LightGBM -> XGBoost cascade on a Redis feature store."""

import dagster as dg

from assets.fraud import features, model, monitoring, raw, scoring

ASSETS = dg.load_assets_from_modules([raw, features, model, scoring, monitoring])
CHECKS = dg.load_asset_checks_from_modules([raw, features, model, scoring, monitoring])
