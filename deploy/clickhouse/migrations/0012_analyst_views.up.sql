-- The views analysts need: quality per hour and canary arm, feedback joined to inferences (now with
-- the arm, template and user), use and cost per caller, and retrieval scores per hour. Each reads its
-- tables with FINAL, so a redelivered event counts once.
--
-- A LEFT JOIN fills missing right-side columns with their type's default unless join_use_nulls = 1,
-- and a SETTINGS clause in a view is not applied when the view is read (see 0003). As in 0003, the
-- right side carries a marker (a count or has_* column) and a value is NULL where the marker is 0.

-- Per-token prices, for usage_by_caller's cost. The platform ships none and invents none: operators add
-- rows (a model's price per million prompt and completion tokens from valid_from on, in a currency,
-- with where the price comes from in source). A price is replaced by inserting the same (model,
-- valid_from) again; a later valid_from starts a new price.
CREATE TABLE IF NOT EXISTS model_prices
(
    model String,
    valid_from DateTime64(3, 'UTC'),
    prompt_price_per_1m_tokens Float64,
    completion_price_per_1m_tokens Float64,
    currency LowCardinality(String),
    source String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (model, valid_from);

-- One row per (generation, feedback), as in 0003, with the routing columns of 0005 and the feedback's
-- user and time appended (the columns before them are unchanged). No feedback: score and
-- feedback_occurred_at are NULL, the text columns ''.
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
    f.comment AS comment,
    i.event_id AS event_id,
    i.user AS user,
    i.arm AS arm,
    i.template AS template,
    i.template_version AS template_version,
    f.correction AS correction,
    f.user_id AS feedback_user_id,
    if(f.has_feedback = 1, f.occurred_at, NULL) AS feedback_occurred_at
FROM inference_log AS i FINAL
LEFT JOIN
(
    SELECT request_id, feedback_id, score, thumb, comment, correction, user_id, occurred_at,
        toUInt8(1) AS has_feedback
    FROM feedback FINAL
) AS f ON i.request_id = f.request_id;

-- Per hour, model, model_version and arm (the alias that answered; '' outside routing by alias).
-- Feedback is folded per request first, so a request with two feedbacks still counts once in requests
-- and latency. Scores: mean_score and p50_score over rated requests (each request's mean score);
-- thumbs_up_share over the thumbs given. NULL where nothing was rated.
CREATE VIEW IF NOT EXISTS quality_hourly AS
SELECT
    toDateTime64(toStartOfHour(i.occurred_at), 0, 'UTC') AS hour,
    i.model AS model,
    i.model_version AS model_version,
    i.arm AS arm,
    count() AS requests,
    countIf(f.feedback_count > 0) AS rated_requests,
    sum(f.feedback_count) AS feedback_count,
    avgOrNullIf(f.mean_score, f.feedback_count > 0) AS mean_score,
    quantileOrNullIf(0.5)(f.mean_score, f.feedback_count > 0) AS p50_score,
    if(sum(f.thumbs) = 0, NULL, sum(f.thumbs_up) / sum(f.thumbs)) AS thumbs_up_share,
    quantile(0.5)(i.latency_ms) AS p50_latency_ms,
    quantile(0.95)(i.latency_ms) AS p95_latency_ms,
    quantile(0.5)(i.time_to_first_token_ms) AS p50_ttft_ms,
    quantile(0.95)(i.time_to_first_token_ms) AS p95_ttft_ms,
    sum(i.prompt_tokens) AS prompt_tokens,
    sum(i.completion_tokens) AS completion_tokens
FROM inference_log AS i FINAL
LEFT JOIN
(
    SELECT
        request_id,
        count() AS feedback_count,
        avg(score) AS mean_score,
        countIf(thumb != '') AS thumbs,
        countIf(thumb = 'up') AS thumbs_up
    FROM feedback FINAL
    GROUP BY request_id
) AS f ON i.request_id = f.request_id
GROUP BY hour, model, model_version, arm;

-- Per day, end user (the caller's `user`, '' when it named none), producer (the service that logged
-- the answer) and model: requests and tokens, and cost from model_prices, the price valid when each
-- answer was logged. Without a price the cost is in tokens only: unpriced_tokens counts the tokens no
-- price covers, and cost is NULL when no answer of the row had a price.
CREATE VIEW IF NOT EXISTS usage_by_caller AS
SELECT
    toDate(i.occurred_at) AS day,
    i.user AS user,
    i.producer AS producer,
    i.model AS model,
    count() AS requests,
    sum(i.prompt_tokens) AS prompt_tokens,
    sum(i.completion_tokens) AS completion_tokens,
    sum(i.prompt_tokens + i.completion_tokens) AS total_tokens,
    sumIf(i.prompt_tokens + i.completion_tokens, p.has_price = 0) AS unpriced_tokens,
    if(
        countIf(p.has_price = 1) = 0,
        NULL,
        sumIf(
            (i.prompt_tokens * p.prompt_price_per_1m_tokens
                + i.completion_tokens * p.completion_price_per_1m_tokens) / 1000000,
            p.has_price = 1
        )
    ) AS cost,
    anyIf(p.currency, p.has_price = 1) AS currency
FROM inference_log AS i FINAL
ASOF LEFT JOIN
(
    SELECT
        model, valid_from, prompt_price_per_1m_tokens, completion_price_per_1m_tokens, currency,
        toUInt8(1) AS has_price
    FROM model_prices FINAL
) AS p ON i.model = p.model AND i.occurred_at >= p.valid_from
GROUP BY day, user, producer, model;

-- Per hour, collection and mode (scores are on each mode's own scale, so modes are not mixed): the
-- queries, the share that found nothing, the top hit's score (mean and median over queries with a
-- hit; NULL when none had one) and latency quantiles.
CREATE VIEW IF NOT EXISTS retrieval_scores_hourly AS
SELECT
    toDateTime64(toStartOfHour(occurred_at), 0, 'UTC') AS hour,
    collection,
    mode,
    count() AS queries,
    countIf(length(chunk_ids) = 0) / count() AS zero_hit_share,
    avg(length(chunk_ids)) AS mean_hits,
    avgOrNullIf(arrayMax(scores), length(scores) > 0) AS mean_top_score,
    quantileOrNullIf(0.5)(arrayMax(scores), length(scores) > 0) AS p50_top_score,
    quantile(0.5)(latency_ms) AS p50_latency_ms,
    quantile(0.95)(latency_ms) AS p95_latency_ms
FROM retrieval_log FINAL
GROUP BY hour, collection, mode;
