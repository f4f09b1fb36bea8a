-- Stage KPIs as a hand-written DuckDB script: one row per month x scope x open stage.
-- A stage visit ends when the deal enters its next stage, or closes; it counts in the month it
-- ends. Forward: the next stage is not a lost stage, or the deal was won from this stage.
-- Parameters as in cube_sql.sql.
WITH
opps AS (
    SELECT *,
        is_closed AND coalesce(closed_at < $as_of, false) AS closed_known,
        is_closed AND coalesce(closed_at < $as_of, false) AND is_won AS won_known
    FROM opportunities
    WHERE created_at < $as_of
),
visits AS (
    SELECT opportunity_id, stage, entered_at,
        lead(entered_at) OVER w AS next_at, lead(stage) OVER w AS next_stage
    FROM stage_history WHERE entered_at < $as_of
    WINDOW w AS (PARTITION BY opportunity_id ORDER BY entered_at)
),
exits AS (
    SELECT v.stage, v.entered_at, o.owner_rep_id AS rep_id,
        coalesce(v.next_at, CASE WHEN o.closed_known THEN o.closed_at END) AS exit_at,
        CASE WHEN v.next_at IS NOT NULL
             THEN v.next_stage NOT IN (SELECT stage FROM opps WHERE is_closed AND NOT is_won)
             ELSE o.won_known END AS forward
    FROM visits v JOIN opps o USING (opportunity_id)
    WHERE v.stage NOT IN (SELECT stage FROM opps WHERE is_closed)
),
by_rep AS (
    SELECT date_trunc('month', exit_at) AS month, e.rep_id, r.team_id, e.stage,
        sum(date_diff('microsecond', e.entered_at, e.exit_at)) / 86400e6 AS stage_days,
        count(*) AS stage_exits,
        count(*) FILTER (WHERE forward) AS stage_advanced
    FROM exits e LEFT JOIN reps r USING (rep_id)
    WHERE exit_at >= $start AND exit_at < $stop
    GROUP BY ALL
)
SELECT month,
    CASE WHEN grouping(team_id) = 1 AND grouping(rep_id) = 1 THEN 'company'
         WHEN grouping(rep_id) = 1 THEN 'team' ELSE 'rep' END AS scope,
    CASE WHEN grouping(team_id) = 1 AND grouping(rep_id) = 1 THEN 'all'
         WHEN grouping(rep_id) = 1 THEN team_id ELSE rep_id END AS scope_id,
    stage,
    sum(stage_days) / nullif(sum(stage_exits), 0) AS time_in_stage_days,
    sum(stage_advanced) / nullif(sum(stage_exits), 0) AS stage_conversion
FROM by_rep
WHERE month >= $first_reported
GROUP BY GROUPING SETS ((month, stage), (month, team_id, stage), (month, rep_id, stage))
ORDER BY month, scope, scope_id, stage
