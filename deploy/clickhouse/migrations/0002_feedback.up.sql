-- feedback: one row per accepted feedback, from the feedback.accepted topic.
--
-- As for inference_log, a redelivered event (same request_id and feedback_id) collapses to one row
-- through ReplacingMergeTree(ingested_at); read through feedback_v (FINAL) for exact counts.
-- thumb is 'up', 'down' or '' (no thumb given); score is normalised to [0, 1].
CREATE TABLE IF NOT EXISTS feedback
(
    event_id UUID,
    feedback_id String,
    request_id String,
    occurred_at DateTime64(3, 'UTC'),
    score Float64,
    thumb LowCardinality(String),
    comment String,
    correction String,
    user_id String,
    metadata Map(String, String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (request_id, feedback_id);
