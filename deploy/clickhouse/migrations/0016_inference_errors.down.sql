-- inference_log_v as 0005 made it, then the column goes.
CREATE OR REPLACE VIEW inference_log_v AS
SELECT
    event_id, request_id, occurred_at, model, model_version, prompt, completion,
    prompt_tokens, completion_tokens, latency_ms, time_to_first_token_ms, finish_reason, streamed,
    temperature, top_p, max_tokens, metadata, trace_id, producer, ingested_at,
    user, arm, template, template_version, retrieval_collection,
    citation_chunk_ids, citation_document_ids, citation_scores
FROM inference_log FINAL;

ALTER TABLE inference_log DROP COLUMN IF EXISTS error;
