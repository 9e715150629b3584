-- retrieval_log: one row per Retrieve call, from the retrieval.logged topic.
--
-- Like every table fed by a consumer: ReplacingMergeTree(ingested_at) with event_id last in the
-- sorting key, so a redelivered event (same event_id, hence the same key) collapses to one row when
-- parts merge; read through retrieval_log_v (FINAL) when counts must be exact. Monthly partitions.
-- The hits are three parallel arrays in rank order: chunk_ids[i] of document_ids[i] scored scores[i].
-- Scores are on the scale of the mode (fused ranks for hybrid, similarity for dense/sparse).
CREATE TABLE IF NOT EXISTS retrieval_log
(
    event_id UUID,
    request_id String,
    occurred_at DateTime64(3, 'UTC'),
    collection LowCardinality(String),
    mode LowCardinality(String),
    query String,
    top_k UInt32,
    document_ids Array(String),
    chunk_ids Array(String),
    scores Array(Float64),
    latency_ms Float64,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (collection, toDate(occurred_at), request_id, event_id);

CREATE VIEW IF NOT EXISTS retrieval_log_v AS
SELECT
    event_id, request_id, occurred_at, collection, mode, query, top_k, document_ids, chunk_ids, scores,
    latency_ms, trace_id, producer, ingested_at
FROM retrieval_log FINAL;
