{{ config(materialized='table') }}
-- Outcomes of every featured snapshot: churn (a non-renewal) in [T, T + 30 days) for
-- training and monitoring, and in [T, T + 90 days) for the A/B test. A label is matured
-- once its whole window lies inside the known history.

with history as (
    select cast(max(last_activity_date) + interval 1 day as date) as end_of_history
    from {{ ref('stg_churn__usage_weekly') }}
),

churns as (
    select customer_id, renewal_date
    from {{ ref('stg_churn__renewals') }}
    where is_churn
)

select
    f.snapshot_date,
    f.customer_id,
    count(c.renewal_date) filter (
        where c.renewal_date < f.snapshot_date + interval {{ setting('churn_label_days') }} day
    ) > 0 as churned_30d,
    f.snapshot_date + interval {{ setting('churn_label_days') }} day <= h.end_of_history as matured_30d,
    count(c.renewal_date) > 0 as churned_90d,
    f.snapshot_date + interval {{ setting('churn_outcome_days') }} day <= h.end_of_history as matured_90d
from {{ ref('churn_features') }} f
cross join history h
left join churns c
    on c.customer_id = f.customer_id
    and c.renewal_date >= f.snapshot_date
    and c.renewal_date < f.snapshot_date + interval {{ setting('churn_outcome_days') }} day
group by f.snapshot_date, f.customer_id, h.end_of_history
