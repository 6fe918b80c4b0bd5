"""Case 2, grocery demand forecasting: segmented models chosen on validation, hierarchical reconciliation,
nightly forecasts from the champion, a weekly refit through a gate, a planning horizon."""

import dagster as dg

from assets.forecast import evaluation, forecasts, models, raw

ASSETS = dg.load_assets_from_modules([raw, models, forecasts, evaluation])
CHECKS = dg.load_asset_checks_from_modules([raw, models, forecasts, evaluation])
