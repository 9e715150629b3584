-- Drift results name the group they are about (model version and arm, or retrieval collection and
-- mode), the test's p-value and alpha, the reference window and the counts compared, and the run
-- (report_id) they came from. Alerts carry their evidence: the query, its parameters, the window and
-- the values seen. loop_steps stores llmops.loop.stepped: where each model's feedback loop stands.
ALTER TABLE drift_reports
    ADD COLUMN IF NOT EXISTS model_version String DEFAULT '' AFTER model,
    ADD COLUMN IF NOT EXISTS arm String DEFAULT '' AFTER model_version,
    ADD COLUMN IF NOT EXISTS p_value Nullable(Float64) AFTER threshold,
    ADD COLUMN IF NOT EXISTS alpha Nullable(Float64) AFTER p_value,
    ADD COLUMN IF NOT EXISTS reference_start Nullable(DateTime64(3, 'UTC')) AFTER window_end,
    ADD COLUMN IF NOT EXISTS reference_end Nullable(DateTime64(3, 'UTC')) AFTER reference_start,
    ADD COLUMN IF NOT EXISTS reference_count UInt64 DEFAULT 0 AFTER reference_end,
    ADD COLUMN IF NOT EXISTS current_count UInt64 DEFAULT 0 AFTER reference_count,
    ADD COLUMN IF NOT EXISTS collection String DEFAULT '' AFTER current_count,
    ADD COLUMN IF NOT EXISTS mode String DEFAULT '' AFTER collection,
    ADD COLUMN IF NOT EXISTS report_id String DEFAULT '' AFTER mode;

ALTER TABLE alerts
    ADD COLUMN IF NOT EXISTS model String DEFAULT '' AFTER labels,
    ADD COLUMN IF NOT EXISTS subject String DEFAULT '' AFTER model,
    ADD COLUMN IF NOT EXISTS query String DEFAULT '' AFTER subject,
    ADD COLUMN IF NOT EXISTS parameters Map(String, String) AFTER query,
    ADD COLUMN IF NOT EXISTS window_start Nullable(DateTime64(3, 'UTC')) AFTER parameters,
    ADD COLUMN IF NOT EXISTS window_end Nullable(DateTime64(3, 'UTC')) AFTER window_start,
    ADD COLUMN IF NOT EXISTS `values` Map(String, Float64) AFTER window_end;

CREATE OR REPLACE VIEW drift_reports_v AS
SELECT
    event_id, model, model_version, arm, occurred_at, signal, statistic, value, threshold, p_value,
    alpha, window_start, window_end, reference_start, reference_end, reference_count, current_count,
    collection, mode, report_id, trace_id, producer, ingested_at
FROM drift_reports FINAL;

CREATE OR REPLACE VIEW alerts_v AS
SELECT
    event_id, rule, occurred_at, severity, message, labels, model, subject, query, parameters,
    window_start, window_end, `values`, trace_id, producer, ingested_at
FROM alerts FINAL;

CREATE TABLE IF NOT EXISTS loop_steps
(
    event_id UUID,
    loop_id String,
    model String,
    occurred_at DateTime64(3, 'UTC'),
    step LowCardinality(String),
    reason String,
    trigger LowCardinality(String),
    dataset_version_id String,
    training_request_key String,
    training_job_id String,
    champion_version Nullable(Int64),
    challenger_version Nullable(Int64),
    canary_share Nullable(Float64),
    next_step String,
    actor String,
    `values` Map(String, Float64),
    evidence Map(String, String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, loop_id, occurred_at, event_id);

CREATE VIEW IF NOT EXISTS loop_steps_v AS
SELECT
    event_id, loop_id, model, occurred_at, step, reason, trigger, dataset_version_id,
    training_request_key, training_job_id, champion_version, challenger_version, canary_share,
    next_step, actor, `values`, evidence, trace_id, producer, ingested_at
FROM loop_steps FINAL;
