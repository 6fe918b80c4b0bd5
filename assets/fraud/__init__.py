"""Case 3, real-time fraud scoring: rules -> LightGBM -> XGBoost cascade on a Redis feature store."""

ASSETS: list = []
CHECKS: list = []
