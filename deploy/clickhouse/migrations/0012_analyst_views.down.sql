DROP VIEW IF EXISTS retrieval_scores_hourly;
DROP VIEW IF EXISTS usage_by_caller;
DROP VIEW IF EXISTS quality_hourly;
DROP TABLE IF EXISTS model_prices;

-- inference_with_feedback as 0003 made it.
CREATE OR REPLACE VIEW inference_with_feedback AS
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
