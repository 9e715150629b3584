-- Requests that failed on the server side (the engine, a deadline, a dependency that was away) are
-- logged too, with the status code's name in `error` ('' for an answer). Rows from before read as
-- answers. Readers that want answers only filter on error = ''.
ALTER TABLE inference_log ADD COLUMN IF NOT EXISTS error LowCardinality(String) DEFAULT '';

CREATE OR REPLACE VIEW inference_log_v AS
SELECT
    event_id, request_id, occurred_at, model, model_version, prompt, completion,
    prompt_tokens, completion_tokens, latency_ms, time_to_first_token_ms, finish_reason, streamed,
    temperature, top_p, max_tokens, metadata, trace_id, producer, ingested_at,
    user, arm, template, template_version, retrieval_collection,
    citation_chunk_ids, citation_document_ids, citation_scores, error
FROM inference_log FINAL;
