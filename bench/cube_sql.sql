-- The KPI cube as a hand-written DuckDB script: one row per month x scope (company, team, rep),
-- one column per KPI. Parameters: $start (first month of the measure window, a year before
-- $first_reported), $end (end of the window), $stop ($end capped at the report date), $as_of
-- (first instant after the report date), $gross_margin. The caller creates the table
-- `probs(stage, probability)` of stage probabilities.
WITH
months AS (
    SELECT range AS month, range + INTERVAL 1 MONTH AS month_end
    FROM range($start::TIMESTAMP, $end::TIMESTAMP, INTERVAL 1 MONTH)
),
opps AS (
    SELECT *,
        is_closed AND coalesce(closed_at < $as_of, false) AS closed_known,
        is_closed AND coalesce(closed_at < $as_of, false) AND is_won AS won_known
    FROM opportunities
    WHERE created_at < $as_of
),
created AS (
    SELECT date_trunc('month', created_at) AS month, owner_rep_id AS rep_id,
        count(*) AS opportunities_created
    FROM opps WHERE created_at >= $start AND created_at < $stop
    GROUP BY ALL
),
closed AS (
    SELECT date_trunc('month', closed_at) AS month, owner_rep_id AS rep_id,
        count(*) AS closed_count,
        count(*) FILTER (WHERE is_won) AS won_count,
        coalesce(sum(amount) FILTER (WHERE is_won), 0) AS won_amount,
        count(amount) FILTER (WHERE is_won) AS won_with_amount,
        coalesce(sum(date_diff('microsecond', created_at, closed_at)) FILTER (WHERE is_won), 0)
            / 86400e6 AS won_cycle_days
    FROM opps WHERE closed_known AND closed_at >= $start AND closed_at < $stop
    GROUP BY ALL
),
open_at_start AS (
    SELECT m.month, o.owner_rep_id AS rep_id, count(*) AS open_at_start
    FROM months m
    JOIN opps o ON o.created_at < m.month AND NOT (o.closed_known AND o.closed_at < m.month)
    GROUP BY ALL
),
open_at_end AS (
    SELECT m.month, m.month_end, o.opportunity_id, o.owner_rep_id, o.amount, o.stage
    FROM months m
    JOIN opps o ON o.created_at < m.month_end AND NOT (o.closed_known AND o.closed_at < m.month_end)
),
pipeline AS (
    -- the stage each open deal was in at the end of the month: its last stage entered before
    SELECT e.month, e.owner_rep_id AS rep_id,
        coalesce(sum(e.amount), 0) AS pipeline_amount,
        coalesce(sum(e.amount * coalesce(p.probability, 0)), 0) AS weighted_pipeline
    FROM open_at_end e
    ASOF LEFT JOIN stage_history sh
        ON sh.opportunity_id = e.opportunity_id AND e.month_end > sh.entered_at
    LEFT JOIN probs p ON p.stage = coalesce(sh.stage, e.stage)
    GROUP BY ALL
),
reps_active AS (
    SELECT m.month, r.rep_id, count(*) AS reps_active
    FROM months m
    JOIN reps r ON (r.start_at IS NULL OR r.start_at < m.month_end)
        AND (r.end_at IS NULL OR r.end_at >= m.month)
    WHERE coalesce(r.is_quota_carrying, true)
    GROUP BY ALL
),
leads_created AS (
    SELECT date_trunc('month', created_at) AS month, owner_rep_id AS rep_id,
        count(*) AS leads_created
    FROM leads WHERE created_at >= $start AND created_at < $stop
    GROUP BY ALL
),
qualified AS (
    SELECT date_trunc('month', l.qualified_at) AS month, l.owner_rep_id AS rep_id,
        count(*) AS qualified_leads,
        count(w.opportunity_id) AS qualified_converted
    FROM leads l
    LEFT JOIN (SELECT opportunity_id FROM opps WHERE won_known) w USING (opportunity_id)
    WHERE l.qualified_at >= $start AND l.qualified_at < $stop
    GROUP BY ALL
),
acts AS (
    SELECT date_trunc('month', occurred_at) AS month, rep_id,
        count(*) AS activities,
        count(*) FILTER (WHERE activity_type = 'call') AS activities_call,
        count(*) FILTER (WHERE activity_type = 'email') AS activities_email,
        count(*) FILTER (WHERE activity_type = 'meeting') AS activities_meeting,
        count(*) FILTER (WHERE activity_type = 'demo') AS activities_demo
    FROM activities WHERE occurred_at >= $start AND occurred_at < $stop
    GROUP BY ALL
),
first_won AS (
    SELECT account_id, closed_at, owner_rep_id
    FROM opps WHERE won_known AND account_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY closed_at, opportunity_id) = 1
),
new_customers AS (
    SELECT date_trunc('month', closed_at) AS month, owner_rep_id AS rep_id,
        count(*) AS new_customers
    FROM first_won WHERE closed_at >= $start AND closed_at < $stop
    GROUP BY ALL
),
account_month AS (
    SELECT account_id, date_trunc('month', recognized_at) AS month,
        coalesce(sum(amount), 0) AS amount
    FROM revenue WHERE recognized_at >= $start AND recognized_at < $stop
    GROUP BY ALL
),
account_revenue AS (
    SELECT am.month, a.owner_rep_id AS rep_id,
        sum(am.amount) AS account_revenue,
        count(*) FILTER (WHERE am.amount > 0) AS accounts_active
    FROM account_month am LEFT JOIN accounts a USING (account_id)
    GROUP BY ALL
),
retention AS (
    SELECT prev.month + INTERVAL 1 MONTH AS month, a.owner_rep_id AS rep_id,
        count(*) AS accounts_prev,
        count(cur.account_id) AS retained_accounts,
        count(*) - count(cur.account_id) AS lost_accounts
    FROM account_month prev
    LEFT JOIN account_month cur
        ON cur.account_id = prev.account_id AND cur.month = prev.month + INTERVAL 1 MONTH
        AND cur.amount > 0
    LEFT JOIN accounts a ON a.account_id = prev.account_id
    WHERE prev.amount > 0 AND prev.month + INTERVAL 1 MONTH < $end
    GROUP BY ALL
),
spend_by_team AS (
    SELECT date_trunc('month', spent_at) AS month, team_id, coalesce(sum(amount), 0) AS spend
    FROM spend WHERE spent_at >= $start AND spent_at < $stop
    GROUP BY ALL
),
by_rep AS (
    SELECT * FROM created
    UNION ALL BY NAME SELECT * FROM closed
    UNION ALL BY NAME SELECT * FROM open_at_start
    UNION ALL BY NAME SELECT * FROM pipeline
    UNION ALL BY NAME SELECT * FROM reps_active
    UNION ALL BY NAME SELECT * FROM leads_created
    UNION ALL BY NAME SELECT * FROM qualified
    UNION ALL BY NAME SELECT * FROM acts
    UNION ALL BY NAME SELECT * FROM new_customers
    UNION ALL BY NAME SELECT * FROM account_revenue
    UNION ALL BY NAME SELECT * FROM retention
),
facts AS (
    SELECT f.*, r.team_id FROM by_rep f LEFT JOIN reps r USING (rep_id)
    UNION ALL BY NAME SELECT * FROM spend_by_team
),
rolled AS (
    SELECT month,
        CASE WHEN grouping(team_id) = 1 AND grouping(rep_id) = 1 THEN 'company'
             WHEN grouping(rep_id) = 1 THEN 'team' ELSE 'rep' END AS scope,
        CASE WHEN grouping(team_id) = 1 AND grouping(rep_id) = 1 THEN 'all'
             WHEN grouping(rep_id) = 1 THEN team_id ELSE rep_id END AS scope_id,
        sum(opportunities_created) AS opportunities_created,
        sum(closed_count) AS closed_count, sum(won_count) AS won_count,
        sum(won_amount) AS won_amount, sum(won_with_amount) AS won_with_amount,
        sum(won_cycle_days) AS won_cycle_days, sum(open_at_start) AS open_at_start,
        sum(pipeline_amount) AS pipeline_amount, sum(weighted_pipeline) AS weighted_pipeline,
        sum(reps_active) AS reps_active, sum(leads_created) AS leads_created,
        sum(qualified_leads) AS qualified_leads, sum(qualified_converted) AS qualified_converted,
        sum(activities) AS activities, sum(activities_call) AS activities_call,
        sum(activities_email) AS activities_email, sum(activities_meeting) AS activities_meeting,
        sum(activities_demo) AS activities_demo, sum(new_customers) AS new_customers,
        sum(account_revenue) AS account_revenue, sum(accounts_active) AS accounts_active,
        sum(accounts_prev) AS accounts_prev, sum(retained_accounts) AS retained_accounts,
        sum(lost_accounts) AS lost_accounts, sum(spend) AS spend
    FROM facts
    GROUP BY GROUPING SETS ((month), (month, team_id), (month, rep_id))
    HAVING scope_id IS NOT NULL
),
scopes AS (
    SELECT 'company' AS scope, 'all' AS scope_id
    UNION ALL SELECT 'team', team_id FROM teams
    UNION ALL SELECT 'rep', rep_id FROM reps
),
grid AS (
    -- every scope in every month, measures 0 where nothing happened
    SELECT m.month, s.scope, s.scope_id, COLUMNS(r.* EXCLUDE (month, scope, scope_id))
    FROM months m CROSS JOIN scopes s
    LEFT JOIN rolled r ON r.month = m.month AND r.scope = s.scope AND r.scope_id = s.scope_id
),
measures AS (
    SELECT month, scope, scope_id, coalesce(COLUMNS(* EXCLUDE (month, scope, scope_id)), 0)
    FROM grid
),
kpis AS (
    SELECT month, scope, scope_id,
        won_amount AS revenue,
        won_count AS deals_won,
        won_count / nullif(closed_count, 0) AS win_rate,
        won_amount / nullif(won_with_amount, 0) AS avg_deal_size,
        won_cycle_days / nullif(won_count, 0) AS sales_cycle_days,
        open_at_start,
        pipeline_amount,
        weighted_pipeline,
        won_amount / nullif(reps_active, 0) AS revenue_per_rep,
        reps_active,
        won_amount / nullif(lag(won_amount, 1) OVER w, 0) - 1 AS revenue_growth_mom,
        won_amount / nullif(lag(won_amount, 12) OVER w, 0) - 1 AS revenue_growth_yoy,
        opportunities_created,
        leads_created,
        qualified_leads,
        qualified_converted / nullif(qualified_leads, 0) AS lead_conversion_rate,
        activities, activities_call, activities_email, activities_meeting, activities_demo,
        new_customers,
        CASE WHEN scope <> 'rep' THEN spend / nullif(new_customers, 0) END AS cac,
        spend,
        retained_accounts / nullif(accounts_prev, 0) AS retention_rate,
        lost_accounts / nullif(accounts_prev, 0) AS churn_rate,
        account_revenue / nullif(accounts_active, 0) AS arpa
    FROM measures
    WINDOW w AS (PARTITION BY scope, scope_id ORDER BY month)
)
SELECT * EXCLUDE (arpa),
    open_at_start * win_rate * avg_deal_size / nullif(sales_cycle_days, 0) AS sales_velocity,
    arpa * $gross_margin / nullif(churn_rate, 0) AS clv
FROM kpis
WHERE month >= $first_reported
ORDER BY month, scope, scope_id
