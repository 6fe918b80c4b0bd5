select
    invoice_id,
    customer_id,
    issue_date,
    due_date,
    amount,
    paid_date,
    disputed_at
from {{ source('churn_raw', 'invoices') }}
