"""Case 4, support-ticket triage: synthetic helpdesk, PII scrubbing, SetFit, routing, monitoring, ROI, online
endpoint."""
