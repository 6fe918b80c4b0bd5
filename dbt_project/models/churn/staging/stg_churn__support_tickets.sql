select
    ticket_id,
    customer_id,
    opened_at,
    category,
    closed_at,
    csat
from {{ source('churn_raw', 'support_tickets') }}
