-- Ranks come from the vocabulary settings (lowest first); a value outside them has no rank (null).
select
    customer_id,
    signup_date,
    sector,
    company_size,
    employees,
    tier,
    plan,
    mrr,
    list_position({{ setting_list('churn_tiers') }}::VARCHAR[], tier) - 1 as tier_rank,
    list_position({{ setting_list('churn_sizes') }}::VARCHAR[], company_size) - 1 as size_rank,
    list_contains({{ setting_list('churn_annual_plans') }}::VARCHAR[], plan) as is_annual
from {{ source('churn_raw', 'customers') }}
