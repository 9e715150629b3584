-- The data side: documents as pushed (documents.raw) and as cleaned (documents.cleaned), ingestion
-- batches (ingestion.batch_completed), labels (labels.created) and dataset versions
-- (datasets.version_created). ReplacingMergeTree on event_id and _v views with FINAL, as for every
-- consumed topic.
--
-- Documents are stored without their text: its length in characters and bytes and a hash stand in
-- for it (text_sha256 is the SHA-256 of the UTF-8 text, computed by monitoring; content_hash is the
-- ingestion service's own hash of the cleaned text). The text itself lives in the ingestion snapshots
-- (snapshot_id) and in the retrieval index.

CREATE TABLE IF NOT EXISTS documents_raw
(
    event_id UUID,
    document_id String,
    occurred_at DateTime64(3, 'UTC'),
    dataset LowCardinality(String),
    source String,
    mime_type LowCardinality(String),
    text_chars UInt64,
    text_bytes UInt64,
    text_sha256 String,
    metadata Map(String, String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (dataset, toDate(occurred_at), document_id, event_id);

CREATE TABLE IF NOT EXISTS documents_cleaned
(
    event_id UUID,
    document_id String,
    occurred_at DateTime64(3, 'UTC'),
    dataset LowCardinality(String),
    batch_id String,
    snapshot_id String,
    content_hash String,
    source String,
    text_chars UInt64,
    text_bytes UInt64,
    pii_redacted Map(String, UInt64),
    metadata Map(String, String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (dataset, toDate(occurred_at), document_id, event_id);

CREATE TABLE IF NOT EXISTS ingestion_batches
(
    event_id UUID,
    batch_id String,
    occurred_at DateTime64(3, 'UTC'),
    dataset LowCardinality(String),
    snapshot_id String,
    snapshot_uri String,
    counts Map(String, Int64),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (dataset, toDate(occurred_at), batch_id, event_id);

CREATE TABLE IF NOT EXISTS labels
(
    event_id UUID,
    label_id String,
    task_id String,
    occurred_at DateTime64(3, 'UTC'),
    queue LowCardinality(String),
    source LowCardinality(String),
    labeler_id String,
    value String,
    document_id String,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (queue, toDate(occurred_at), task_id, label_id, event_id);

CREATE TABLE IF NOT EXISTS dataset_versions
(
    event_id UUID,
    version_id String,
    occurred_at DateTime64(3, 'UTC'),
    dataset LowCardinality(String),
    uri String,
    train_count Int64,
    eval_count Int64,
    snapshot_ids Array(String),
    queues Array(String),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (dataset, version_id, event_id);

CREATE VIEW IF NOT EXISTS documents_raw_v AS
SELECT
    event_id, document_id, occurred_at, dataset, source, mime_type, text_chars, text_bytes, text_sha256,
    metadata, trace_id, producer, ingested_at
FROM documents_raw FINAL;

CREATE VIEW IF NOT EXISTS documents_cleaned_v AS
SELECT
    event_id, document_id, occurred_at, dataset, batch_id, snapshot_id, content_hash, source, text_chars,
    text_bytes, pii_redacted, metadata, trace_id, producer, ingested_at
FROM documents_cleaned FINAL;

CREATE VIEW IF NOT EXISTS ingestion_batches_v AS
SELECT event_id, batch_id, occurred_at, dataset, snapshot_id, snapshot_uri, counts, trace_id, producer, ingested_at
FROM ingestion_batches FINAL;

CREATE VIEW IF NOT EXISTS labels_v AS
SELECT
    event_id, label_id, task_id, occurred_at, queue, source, labeler_id, value, document_id, trace_id,
    producer, ingested_at
FROM labels FINAL;

CREATE VIEW IF NOT EXISTS dataset_versions_v AS
SELECT
    event_id, version_id, occurred_at, dataset, uri, train_count, eval_count, snapshot_ids, queues,
    trace_id, producer, ingested_at
FROM dataset_versions FINAL;
