-- Views for analysts: the tables read with FINAL, so redelivered events count once.
-- Columns are listed, not `*`, so that a later migration that adds a column decides whether the
-- views show it (CREATE OR REPLACE VIEW).

CREATE VIEW IF NOT EXISTS inference_log_v AS
SELECT
    event_id, request_id, occurred_at, model, model_version, prompt, completion,
    prompt_tokens, completion_tokens, latency_ms, time_to_first_token_ms, finish_reason, streamed,
    temperature, top_p, max_tokens, metadata, trace_id, producer, ingested_at
FROM inference_log FINAL;

CREATE VIEW IF NOT EXISTS feedback_v AS
SELECT
    event_id, feedback_id, request_id, occurred_at, score, thumb, comment, correction, user_id,
    metadata, trace_id, producer, ingested_at
FROM feedback FINAL;

-- One row per (generation, feedback); a generation without feedback gives one row whose score is
-- NULL and whose feedback_id, thumb and comment are ''.
-- A LEFT JOIN fills missing right-side columns with their type's default (score 0, a real score)
-- unless join_use_nulls = 1; that setting is not a choice here: a SETTINGS clause in the view is not
-- applied when the view is read (measured with chdb 4.4), and read-only queries cannot set it. So the
-- right side carries a marker column, and score is NULL where the marker is missing.
CREATE VIEW IF NOT EXISTS inference_with_feedback AS
SELECT
    i.request_id AS request_id,
    i.occurred_at AS occurred_at,
    i.model AS model,
    i.model_version AS model_version,
    i.prompt AS prompt,
    i.completion AS completion,
    i.prompt_tokens AS prompt_tokens,
    i.completion_tokens AS completion_tokens,
    i.latency_ms AS latency_ms,
    i.time_to_first_token_ms AS time_to_first_token_ms,
    f.feedback_id AS feedback_id,
    if(f.has_feedback = 1, f.score, NULL) AS score,
    f.thumb AS thumb,
    f.comment AS comment
FROM inference_log AS i FINAL
LEFT JOIN
(
    SELECT request_id, feedback_id, score, thumb, comment, toUInt8(1) AS has_feedback
    FROM feedback FINAL
) AS f ON i.request_id = f.request_id;
