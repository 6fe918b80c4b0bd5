select
    customer_id,
    signup_date,
    sector,
    company_size,
    employees,
    tier,
    plan,
    mrr_eur,
    case tier when 'basic' then 0 when 'pro' then 1 else 2 end as tier_rank,
    case company_size when 'micro' then 0 when 'small' then 1 else 2 end as size_rank,
    plan = 'annual' as is_annual
from {{ source('churn_raw', 'customers') }}
