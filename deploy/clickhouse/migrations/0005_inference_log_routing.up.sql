-- What answered and with what: the caller's end user, the canary arm (the alias that answered), the
-- prompt template and its version, and the retrieved chunks the answer was given (citations, in the
-- order the prompt numbered them). Added with defaults, so rows from before read as '' / NULL / [].
ALTER TABLE inference_log
    ADD COLUMN IF NOT EXISTS user String DEFAULT '',
    ADD COLUMN IF NOT EXISTS arm LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS template String DEFAULT '',
    ADD COLUMN IF NOT EXISTS template_version Nullable(UInt32),
    ADD COLUMN IF NOT EXISTS retrieval_collection String DEFAULT '',
    ADD COLUMN IF NOT EXISTS citation_chunk_ids Array(String) DEFAULT [],
    ADD COLUMN IF NOT EXISTS citation_document_ids Array(String) DEFAULT [],
    ADD COLUMN IF NOT EXISTS citation_scores Array(Float64) DEFAULT [];

CREATE OR REPLACE VIEW inference_log_v AS
SELECT
    event_id, request_id, occurred_at, model, model_version, prompt, completion,
    prompt_tokens, completion_tokens, latency_ms, time_to_first_token_ms, finish_reason, streamed,
    temperature, top_p, max_tokens, metadata, trace_id, producer, ingested_at,
    user, arm, template, template_version, retrieval_collection,
    citation_chunk_ids, citation_document_ids, citation_scores
FROM inference_log FINAL;
