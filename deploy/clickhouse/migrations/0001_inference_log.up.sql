-- inference_log: one row per completed generation, from the inference.logged topic.
--
-- Kafka delivers at least once, so the same event can arrive twice. ReplacingMergeTree(ingested_at)
-- with request_id in the sorting key makes a redelivered event (same model, day and request_id)
-- collapse to one row, the last ingested, when parts merge. Until a merge both copies are stored:
-- read through inference_log_v (FINAL) when counts must be exact.
-- Monthly partitions keep merges local and let retention drop whole months.
-- Migrations are never edited once landed: change the schema with a new, higher-numbered file.
CREATE TABLE IF NOT EXISTS inference_log
(
    event_id UUID,
    request_id String,
    occurred_at DateTime64(3, 'UTC'),
    model LowCardinality(String),
    model_version String,
    prompt String,
    completion String,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    latency_ms Float64,
    time_to_first_token_ms Float64,
    finish_reason LowCardinality(String),
    streamed Bool,
    temperature Nullable(Float32),
    top_p Nullable(Float32),
    max_tokens Nullable(UInt32),
    metadata Map(String, String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, toDate(occurred_at), request_id);
