"""Case 2, grocery demand forecasting: segmented models, hierarchical reconciliation, nightly D+1..D+14 per store."""

ASSETS: list = []
CHECKS: list = []
