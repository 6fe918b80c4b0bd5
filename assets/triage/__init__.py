"""Case 4, support-ticket triage: PII scrubbing, SetFit, confidence routing, monitoring, retraining."""

import dagster as dg

from assets.triage import model, reports, routing, tickets

ASSETS = dg.load_assets_from_modules([tickets, model, routing, reports])
CHECKS = dg.load_asset_checks_from_modules([tickets, model, routing, reports])
