-- inference_with_feedback and quality_hourly as 0012 made them, usage_by_caller as 0013 made it.
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

CREATE OR REPLACE VIEW quality_hourly AS
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

CREATE OR REPLACE VIEW usage_by_caller AS
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
FROM
(
    SELECT
        occurred_at, user, producer, model, prompt_tokens, completion_tokens,
        replaceRegexpOne(model, '(@.*|/[0-9]+)$', '') AS priced_model
    FROM inference_log FINAL
) AS i
ASOF LEFT JOIN
(
    SELECT
        model, valid_from, prompt_price_per_1m_tokens, completion_price_per_1m_tokens, currency,
        toUInt8(1) AS has_price
    FROM model_prices FINAL
) AS p ON i.priced_model = p.model AND i.occurred_at >= p.valid_from
GROUP BY day, user, producer, model;
