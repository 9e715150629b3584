-- Training: one table per event kind (training.requested, .progress, .completed, .failed), each
-- ReplacingMergeTree(ingested_at) with event_id last in the sorting key (a redelivered event collapses),
-- read with FINAL through its _v view; and training_runs_v, one row per job with its latest state.
--
-- training.requested carries an idempotency key, not a job id (the training service assigns the job
-- id when it queues the request), so requests cannot be joined to jobs from the events alone:
-- training_requests stands on its own and a job's row in training_runs_v starts with its first event.
-- hyperparameters are text: numbers as written in JSON (2e-4 -> '0.0002'), lists as JSON arrays.

CREATE TABLE IF NOT EXISTS training_requests
(
    event_id UUID,
    request_key String,
    occurred_at DateTime64(3, 'UTC'),
    base_model String,
    dataset_version_id String,
    method LowCardinality(String),
    model_name String,
    hyperparameters Map(String, String),
    resources Map(String, Float64),
    reason String,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model_name, toDate(occurred_at), request_key, event_id);

CREATE TABLE IF NOT EXISTS training_progress
(
    event_id UUID,
    job_id String,
    occurred_at DateTime64(3, 'UTC'),
    step UInt32,
    total_steps UInt32,
    epoch Float64,
    loss Float64,
    learning_rate Float64,
    tokens_per_second Float64,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (job_id, step, event_id);

CREATE TABLE IF NOT EXISTS training_completed
(
    event_id UUID,
    job_id String,
    occurred_at DateTime64(3, 'UTC'),
    model_name String,
    base_model String,
    dataset_version_id String,
    adapter_uri String,
    method LowCardinality(String),
    params Map(String, String),
    metrics Map(String, Float64),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model_name, toDate(occurred_at), job_id, event_id);

CREATE TABLE IF NOT EXISTS training_failed
(
    event_id UUID,
    job_id String,
    occurred_at DateTime64(3, 'UTC'),
    reason String,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), job_id, event_id);

CREATE VIEW IF NOT EXISTS training_requests_v AS
SELECT
    event_id, request_key, occurred_at, base_model, dataset_version_id, method, model_name,
    hyperparameters, resources, reason, trace_id, producer, ingested_at
FROM training_requests FINAL;

CREATE VIEW IF NOT EXISTS training_progress_v AS
SELECT
    event_id, job_id, occurred_at, step, total_steps, epoch, loss, learning_rate, tokens_per_second,
    trace_id, producer, ingested_at
FROM training_progress FINAL;

CREATE VIEW IF NOT EXISTS training_completed_v AS
SELECT
    event_id, job_id, occurred_at, model_name, base_model, dataset_version_id, adapter_uri, method,
    params, metrics, trace_id, producer, ingested_at
FROM training_completed FINAL;

CREATE VIEW IF NOT EXISTS training_failed_v AS
SELECT event_id, job_id, occurred_at, reason, trace_id, producer, ingested_at
FROM training_failed FINAL;

-- One row per job: 'running' until a completed or failed event arrives (the latest of those wins),
-- its last progress (NULL before the first), what it produced and why it failed. duration_s runs from
-- the job's first event (its first progress: nothing announces a start) to its end, or to its latest
-- event while it runs.
CREATE VIEW IF NOT EXISTS training_runs_v AS
SELECT
    job_id,
    if(countIf(kind != 'progress') = 0, 'running', argMaxIf(kind, occurred_at, kind != 'progress')) AS state,
    min(occurred_at) AS first_seen_at,
    max(occurred_at) AS last_seen_at,
    if(countIf(kind != 'progress') = 0, NULL, maxIf(occurred_at, kind != 'progress')) AS ended_at,
    dateDiff('millisecond', min(occurred_at), max(occurred_at)) / 1000 AS duration_s,
    countIf(kind = 'progress') AS progress_events,
    if(progress_events = 0, NULL, argMaxIf(step, (occurred_at, step), kind = 'progress')) AS last_step,
    if(progress_events = 0, NULL, argMaxIf(total_steps, (occurred_at, step), kind = 'progress')) AS total_steps,
    if(progress_events = 0, NULL, argMaxIf(epoch, (occurred_at, step), kind = 'progress')) AS last_epoch,
    if(progress_events = 0, NULL, argMaxIf(loss, (occurred_at, step), kind = 'progress')) AS last_loss,
    if(progress_events = 0, NULL, argMaxIf(learning_rate, (occurred_at, step), kind = 'progress'))
        AS last_learning_rate,
    if(progress_events = 0, NULL, argMaxIf(tokens_per_second, (occurred_at, step), kind = 'progress'))
        AS last_tokens_per_second,
    anyIf(model_name, kind = 'completed') AS model_name,
    anyIf(base_model, kind = 'completed') AS base_model,
    anyIf(dataset_version_id, kind = 'completed') AS dataset_version_id,
    anyIf(method, kind = 'completed') AS method,
    anyIf(adapter_uri, kind = 'completed') AS adapter_uri,
    anyIf(metrics, kind = 'completed') AS metrics,
    anyIf(reason, kind = 'failed') AS failure_reason
FROM
(
    SELECT
        job_id, occurred_at, 'progress' AS kind, step, total_steps, epoch, loss, learning_rate,
        tokens_per_second, '' AS model_name, '' AS base_model, '' AS dataset_version_id, '' AS method,
        '' AS adapter_uri, CAST(map(), 'Map(String, Float64)') AS metrics, '' AS reason
    FROM training_progress FINAL
    UNION ALL
    SELECT
        job_id, occurred_at, 'completed', 0, 0, 0, 0, 0, 0, model_name, base_model, dataset_version_id,
        toString(method), adapter_uri, metrics, ''
    FROM training_completed FINAL
    UNION ALL
    SELECT
        job_id, occurred_at, 'failed', 0, 0, 0, 0, 0, 0, '', '', '', '', '',
        CAST(map(), 'Map(String, Float64)'), reason
    FROM training_failed FINAL
)
GROUP BY job_id;
