-- judge_scores stores llmops.monitoring.answer_judged: live answers scored by an LLM judge, which
-- the canary analysis compares between the arms. One row per answer, judge and prompt version (a
-- re-asked or redelivered judgement replaces the earlier one); score is NULL where the judge gave
-- no rating.
CREATE TABLE IF NOT EXISTS judge_scores
(
    event_id UUID,
    request_id String,
    occurred_at DateTime64(3, 'UTC'),
    model String,
    model_version String,
    arm LowCardinality(String),
    judge String,
    prompt_version LowCardinality(String),
    score Nullable(Float64),
    rating Nullable(Float64),
    judge_answer String,
    loop_id String,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, request_id, judge, prompt_version);

CREATE VIEW IF NOT EXISTS judge_scores_v AS
SELECT
    event_id, request_id, occurred_at, model, model_version, arm, judge, prompt_version, score, rating,
    judge_answer, loop_id, trace_id, producer, ingested_at
FROM judge_scores FINAL;
