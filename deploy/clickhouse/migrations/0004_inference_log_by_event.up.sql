-- inference_log collapses a redelivered event, never two generations: event_id joins the sorting key.
--
-- Until now a row was keyed on (model, day, request_id), so two different answers that reuse a
-- caller's request_id became one row when parts merged. event_id is fixed when serving logs the
-- answer, so a redelivery (same event_id) still collapses. ClickHouse cannot change a sorting key to
-- take an existing column, so the table is rebuilt under the new key and swapped in.
CREATE TABLE inference_log_0004
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
ORDER BY (model, toDate(occurred_at), request_id, event_id);

INSERT INTO inference_log_0004 SELECT * FROM inference_log;

RENAME TABLE inference_log TO inference_log_before_0004, inference_log_0004 TO inference_log;

DROP TABLE inference_log_before_0004;
