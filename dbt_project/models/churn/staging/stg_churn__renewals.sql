select
    customer_id,
    renewal_date,
    outcome,
    outcome = 'churned' as is_churn
from {{ source('churn_raw', 'renewals') }}
