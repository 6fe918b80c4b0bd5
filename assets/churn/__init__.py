"""Case 1, churn prediction: raw SaaS tables -> dbt features -> LightGBM -> weekly scores -> CRM -> ROI."""
