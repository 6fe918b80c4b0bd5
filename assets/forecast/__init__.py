"""Case 2, grocery demand forecasting: segmented models, hierarchical reconciliation, nightly D+1..D+14 per store."""

import dagster as dg

from assets.forecast import evaluation, forecasts, models, raw

ASSETS = dg.load_assets_from_modules([raw, models, forecasts, evaluation])
CHECKS = dg.load_asset_checks_from_modules([raw, models, forecasts, evaluation])
