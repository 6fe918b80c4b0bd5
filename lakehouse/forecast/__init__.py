"""Case 2, grocery demand forecasting: the domain (no Dagster)."""
