-- Every result of every scheduled drift run (and of DriftReport calls), drifted or not, written by
-- monitoring itself: drift over time, with the runs where nothing drifted. drift_reports keeps what
-- was published as monitoring.drift_detected. One row per (report, group, signal, statistic).
CREATE TABLE IF NOT EXISTS drift_results
(
    report_id String,
    computed_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    model String,
    model_version String,
    arm String,
    collection String,
    mode String,
    signal LowCardinality(String),
    statistic LowCardinality(String),
    value Nullable(Float64),
    p_value Nullable(Float64),
    threshold Float64,
    alpha Nullable(Float64),
    drifted Nullable(Bool),
    status LowCardinality(String),
    note String,
    reference_count UInt64,
    current_count UInt64,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    reference_start DateTime64(3, 'UTC'),
    reference_end DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(computed_at)
ORDER BY (model, signal, statistic, model_version, arm, collection, mode, report_id);

CREATE VIEW IF NOT EXISTS drift_results_v AS
SELECT
    report_id, computed_at, source, model, model_version, arm, collection, mode, signal, statistic,
    value, p_value, threshold, alpha, drifted, status, note, reference_count, current_count,
    window_start, window_end, reference_start, reference_end, ingested_at
FROM drift_results FINAL;
