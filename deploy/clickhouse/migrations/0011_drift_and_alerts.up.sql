-- Monitoring's own findings: drift reports (monitoring.drift_detected) and alerts (monitoring.alert),
-- stored as they are published, so that they can be read next to the evidence. ReplacingMergeTree on
-- event_id and _v views with FINAL, as for every consumed topic.
CREATE TABLE IF NOT EXISTS drift_reports
(
    event_id UUID,
    model String,
    occurred_at DateTime64(3, 'UTC'),
    signal LowCardinality(String),
    statistic LowCardinality(String),
    value Float64,
    threshold Float64,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, signal, toDate(occurred_at), event_id);

CREATE TABLE IF NOT EXISTS alerts
(
    event_id UUID,
    rule String,
    occurred_at DateTime64(3, 'UTC'),
    severity LowCardinality(String),
    message String,
    labels Map(String, String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (rule, toDate(occurred_at), event_id);

CREATE VIEW IF NOT EXISTS drift_reports_v AS
SELECT
    event_id, model, occurred_at, signal, statistic, value, threshold, window_start, window_end,
    trace_id, producer, ingested_at
FROM drift_reports FINAL;

CREATE VIEW IF NOT EXISTS alerts_v AS
SELECT event_id, rule, occurred_at, severity, message, labels, trace_id, producer, ingested_at
FROM alerts FINAL;
