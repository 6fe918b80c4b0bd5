select
    invoice_id,
    customer_id,
    issue_date,
    due_date,
    amount_eur,
    paid_date,
    disputed_at
from {{ source('churn_raw', 'invoices') }}
