CREATE OR REPLACE VIEW inference_log_v AS
SELECT
    event_id, request_id, occurred_at, model, model_version, prompt, completion,
    prompt_tokens, completion_tokens, latency_ms, time_to_first_token_ms, finish_reason, streamed,
    temperature, top_p, max_tokens, metadata, trace_id, producer, ingested_at
FROM inference_log FINAL;

ALTER TABLE inference_log
    DROP COLUMN IF EXISTS user,
    DROP COLUMN IF EXISTS arm,
    DROP COLUMN IF EXISTS template,
    DROP COLUMN IF EXISTS template_version,
    DROP COLUMN IF EXISTS retrieval_collection,
    DROP COLUMN IF EXISTS citation_chunk_ids,
    DROP COLUMN IF EXISTS citation_document_ids,
    DROP COLUMN IF EXISTS citation_scores;
