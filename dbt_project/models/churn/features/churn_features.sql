{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
    )
}}
-- Point-in-time churn features, one row per active customer and weekly snapshot (Monday).
-- "As of snapshot T" means facts dated strictly before T: the Monday morning scoring run
-- sees everything up to Sunday night and nothing later. Each fact enters with the date
-- it became known (a payment on its paid date, a CSAT on the ticket's closing time).
-- Shared by training (many snapshots) and scoring (one snapshot); the Dagster partition
-- passes the [snapshot_start, snapshot_end) range.

{% set lookback_weeks = setting('churn_lookback_weeks') %}

with history as (
    select
        min(week_start) as first_week,
        cast(max(last_activity_date) + interval 1 day as date) as end_of_history
    from {{ ref('stg_churn__usage_weekly') }}
),

snapshots as (
    select cast(s.snapshot_date as date) as snapshot_date
    from history,
        unnest(generate_series(
            cast(date_trunc('week', cast('{{ var("snapshot_start", "1900-01-01") }}' as date)) as timestamp),
            cast('{{ var("snapshot_end", "2999-01-01") }}' as timestamp) - interval 1 day,
            interval 7 day
        )) as s(snapshot_date)
    where s.snapshot_date >= first_week + interval {{ lookback_weeks * 7 }} day
      and s.snapshot_date <= end_of_history
      and s.snapshot_date >= cast('{{ var("snapshot_start", "1900-01-01") }}' as date)
),

first_churn as (
    select customer_id, min(renewal_date) as churn_date
    from {{ ref('stg_churn__renewals') }}
    where is_churn
    group by 1
),

active as (
    select s.snapshot_date, c.*
    from snapshots s
    join {{ ref('stg_churn__customers') }} c on c.signup_date < s.snapshot_date
    left join first_churn f on f.customer_id = c.customer_id
    where f.churn_date is null or f.churn_date >= s.snapshot_date
),

-- Each weekly usage bucket is seen by the snapshots of the following weeks.
usage_seen as (
    select
        w.customer_id,
        cast(w.week_start + to_days(cast(7 * k.weeks_ago as integer)) as date) as snapshot_date,
        k.weeks_ago,
        w.session_minutes,
        w.logins,
        w.active_days,
        w.key_feature_mask
    from {{ ref('stg_churn__usage_weekly') }} w,
        range(1, {{ lookback_weeks + 1 }}) as k(weeks_ago)
),

usage as (
    select
        u.customer_id,
        u.snapshot_date,
        sum(u.session_minutes) filter (where u.weeks_ago = 1) as minutes_last_week,
        sum(u.session_minutes) filter (where u.weeks_ago = 4) as minutes_week_minus_4,
        sum(u.session_minutes) filter (where u.weeks_ago <= 4) as minutes_28d,
        sum(u.session_minutes) as minutes_91d,
        sum(u.logins) filter (where u.weeks_ago <= 4) as logins_28d,
        sum(u.active_days) filter (where u.weeks_ago <= 4) as active_days_28d,
        bit_count(bit_or(u.key_feature_mask) filter (where u.weeks_ago <= 4)) as key_features_28d
    from usage_seen u
    join snapshots s using (snapshot_date)
    group by 1, 2
),

last_login as (
    select a.customer_id, a.snapshot_date, w.last_activity_date
    from active a
    asof left join {{ ref('stg_churn__usage_weekly') }} w
        on a.customer_id = w.customer_id and a.snapshot_date > w.last_activity_date
),

tickets as (
    select
        a.customer_id,
        a.snapshot_date,
        count(*) filter (where t.opened_at >= a.snapshot_date - interval 30 day) as tickets_30d,
        count(*) filter (where t.opened_at >= a.snapshot_date - interval 30 day and list_contains({{ setting_list('churn_incident_categories') }}::VARCHAR[], t.category)) as incident_tickets_30d,
        count(*) filter (where t.closed_at is null or t.closed_at >= a.snapshot_date) as open_tickets,
        avg(t.csat) filter (where t.closed_at < a.snapshot_date and t.closed_at >= a.snapshot_date - interval 90 day) as csat_90d
    from active a
    join {{ ref('stg_churn__support_tickets') }} t
        on t.customer_id = a.customer_id
        and t.opened_at < a.snapshot_date
        and t.opened_at >= a.snapshot_date - interval 120 day
    group by 1, 2
),

billing as (
    select
        a.customer_id,
        a.snapshot_date,
        count(*) filter (
            where i.due_date < a.snapshot_date and i.due_date >= a.snapshot_date - interval 180 day
              and (i.paid_date is null or i.paid_date > i.due_date)
        ) as late_payments_180d,
        coalesce(sum(i.amount) filter (
            where i.due_date < a.snapshot_date and (i.paid_date is null or i.paid_date >= a.snapshot_date)
        ), 0) as overdue_amount,
        count(*) filter (
            where i.disputed_at < a.snapshot_date and i.disputed_at >= a.snapshot_date - interval 180 day
        ) as disputes_180d
    from active a
    join {{ ref('stg_churn__invoices') }} i
        on i.customer_id = a.customer_id
        and i.issue_date < a.snapshot_date
        and i.issue_date >= a.snapshot_date - interval 400 day
    group by 1, 2
),

last_renewal as (
    select a.customer_id, a.snapshot_date, r.renewal_date
    from active a
    asof left join {{ ref('stg_churn__renewals') }} r
        on a.customer_id = r.customer_id and a.snapshot_date > r.renewal_date
)

select
    a.snapshot_date,
    a.customer_id,
    -- usage: the trend (week 4 / week 1 of the last four weeks, +1 minute smoothing) first
    (coalesce(u.minutes_last_week, 0) + 1) / (coalesce(u.minutes_week_minus_4, 0) + 1) as usage_trend,
    coalesce(u.minutes_28d, 0) as minutes_28d,
    coalesce(u.minutes_91d, 0) as minutes_91d,
    coalesce(u.logins_28d, 0) as logins_28d,
    coalesce(u.active_days_28d, 0) as active_days_28d,
    datediff('day', coalesce(l.last_activity_date, a.signup_date), a.snapshot_date) as days_since_last_login,
    coalesce(u.key_features_28d, 0) / {{ setting('churn_key_features') }} as activation_score,
    -- support
    coalesce(t.tickets_30d, 0) as tickets_30d,
    coalesce(t.incident_tickets_30d, 0) as incident_tickets_30d,
    coalesce(t.open_tickets, 0) as open_tickets,
    t.csat_90d,
    -- billing
    coalesce(b.late_payments_180d, 0) as late_payments_180d,
    coalesce(b.overdue_amount, 0) as overdue_amount,
    coalesce(b.disputes_180d, 0) as disputes_180d,
    -- profile and contract
    datediff('day', a.signup_date, a.snapshot_date) as tenure_days,
    a.employees,
    a.mrr,
    a.tier_rank,
    a.size_rank,
    cast(a.is_annual as integer) as is_annual,
    datediff(
        'day',
        a.snapshot_date,
        coalesce(r.renewal_date, a.signup_date)
            + case when a.is_annual then interval 1 year else interval 1 month end
    ) as days_to_renewal
from active a
left join usage u on u.customer_id = a.customer_id and u.snapshot_date = a.snapshot_date
left join last_login l on l.customer_id = a.customer_id and l.snapshot_date = a.snapshot_date
left join tickets t on t.customer_id = a.customer_id and t.snapshot_date = a.snapshot_date
left join billing b on b.customer_id = a.customer_id and b.snapshot_date = a.snapshot_date
left join last_renewal r on r.customer_id = a.customer_id and r.snapshot_date = a.snapshot_date
