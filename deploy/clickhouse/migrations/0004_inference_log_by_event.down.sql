-- Back to the sorting key of 0001: rows of one (model, day, request_id) collapse again on merge.
CREATE TABLE inference_log_0001
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

INSERT INTO inference_log_0001 SELECT * FROM inference_log;

RENAME TABLE inference_log TO inference_log_before_down_0004, inference_log_0001 TO inference_log;

DROP TABLE inference_log_before_down_0004;
