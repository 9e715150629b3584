DROP VIEW IF EXISTS loop_steps_v;
DROP TABLE IF EXISTS loop_steps;

CREATE OR REPLACE VIEW alerts_v AS
SELECT event_id, rule, occurred_at, severity, message, labels, trace_id, producer, ingested_at
FROM alerts FINAL;

CREATE OR REPLACE VIEW drift_reports_v AS
SELECT
    event_id, model, occurred_at, signal, statistic, value, threshold, window_start, window_end,
    trace_id, producer, ingested_at
FROM drift_reports FINAL;

ALTER TABLE alerts
    DROP COLUMN IF EXISTS `values`,
    DROP COLUMN IF EXISTS window_end,
    DROP COLUMN IF EXISTS window_start,
    DROP COLUMN IF EXISTS parameters,
    DROP COLUMN IF EXISTS query,
    DROP COLUMN IF EXISTS subject,
    DROP COLUMN IF EXISTS model;

ALTER TABLE drift_reports
    DROP COLUMN IF EXISTS report_id,
    DROP COLUMN IF EXISTS mode,
    DROP COLUMN IF EXISTS collection,
    DROP COLUMN IF EXISTS current_count,
    DROP COLUMN IF EXISTS reference_count,
    DROP COLUMN IF EXISTS reference_end,
    DROP COLUMN IF EXISTS reference_start,
    DROP COLUMN IF EXISTS alpha,
    DROP COLUMN IF EXISTS p_value,
    DROP COLUMN IF EXISTS arm,
    DROP COLUMN IF EXISTS model_version;
