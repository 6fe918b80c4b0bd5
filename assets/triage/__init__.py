"""Case 4, support-ticket triage: PII scrubbing, a fine-tuned sentence classifier, confidence and
out-of-scope routing, monitoring, retraining, evaluation and ROI reports."""

import dagster as dg

from assets.triage import model, raw, reports, routing

ASSETS = dg.load_assets_from_modules([raw, model, routing, reports])
CHECKS = dg.load_asset_checks_from_modules([raw, model, routing, reports])
