-- Daily usage rolled up to Monday-based weeks. Snapshots are Mondays, so a week bucket
-- is entirely before or entirely after any snapshot: point-in-time windows can be built
-- from whole weeks.
select
    customer_id,
    cast(date_trunc('week', activity_date) as date) as week_start,
    sum(session_minutes) as session_minutes,
    sum(logins) as logins,
    count(*) as active_days,
    bit_or(key_feature_mask) as key_feature_mask,
    max(activity_date) as last_activity_date
from {{ source('churn_raw', 'usage_daily') }}
group by 1, 2
