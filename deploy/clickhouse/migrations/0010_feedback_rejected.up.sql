-- feedback_rejected: feedback the feedback service turned down (feedback.rejected), with its reasons.
-- With feedback (the accepted ones) it holds the outcome of each submission; submitted_event_id names
-- the feedback.submitted event it answers. ReplacingMergeTree on event_id and a _v view with FINAL, as
-- for every consumed topic.
CREATE TABLE IF NOT EXISTS feedback_rejected
(
    event_id UUID,
    request_id String,
    feedback_id String,
    occurred_at DateTime64(3, 'UTC'),
    reasons Array(String),
    submitted_event_id Nullable(UUID),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), request_id, event_id);

CREATE VIEW IF NOT EXISTS feedback_rejected_v AS
SELECT event_id, request_id, feedback_id, occurred_at, reasons, submitted_event_id, trace_id, producer, ingested_at
FROM feedback_rejected FINAL;
