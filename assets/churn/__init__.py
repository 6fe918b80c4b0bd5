"""Case 1, churn prediction: raw SaaS tables -> dbt features -> LightGBM -> weekly scores -> CRM -> ROI."""

import dagster as dg

from assets.churn import features, model, raw, reports, scoring

ASSETS = dg.load_assets_from_modules([raw, features, model, scoring, reports])
CHECKS = dg.load_asset_checks_from_modules([model, scoring, reports])
