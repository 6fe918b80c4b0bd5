"""Case 4, support-ticket triage: PII scrubbing, SetFit, confidence routing, monitoring, retraining."""

ASSETS: list = []
CHECKS: list = []
