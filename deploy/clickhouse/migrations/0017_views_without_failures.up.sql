-- Since 0016 inference_log holds requests that failed on the server side (`error` set) beside the
-- answers, and the views read them as answers: a timeout's latency went into the quantiles, its
-- partial tokens into the sums, feedback on it into the scores. The views now tell them apart.
-- New columns are appended, so the columns before them keep their place and meaning, except where
-- said below.

-- inference_with_feedback: every request still (a failure can be rated), with its `error` appended
-- ('' for an answer).
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
    if(f.has_feedback = 1, f.occurred_at, NULL) AS feedback_occurred_at,
    i.error AS error
FROM inference_log AS i FINAL
LEFT JOIN
(
    SELECT request_id, feedback_id, score, thumb, comment, correction, user_id, occurred_at,
        toUInt8(1) AS has_feedback
    FROM feedback FINAL
) AS f ON i.request_id = f.request_id;

-- quality_hourly: `requests` still counts every request; `failed` counts those with an error and
-- `error_rate` is failed / requests. Everything else is over answers only: feedback figures (feedback
-- on a failure is about the failure, not about an answer), latency and TTFT quantiles (NULL in an hour
-- where nothing was answered, as they are now nullable) and token sums (usage_by_caller counts what
-- failures spent).
CREATE OR REPLACE VIEW quality_hourly AS
SELECT
    toDateTime64(toStartOfHour(i.occurred_at), 0, 'UTC') AS hour,
    i.model AS model,
    i.model_version AS model_version,
    i.arm AS arm,
    count() AS requests,
    countIf(f.feedback_count > 0 AND i.error = '') AS rated_requests,
    sumIf(f.feedback_count, i.error = '') AS feedback_count,
    avgOrNullIf(f.mean_score, f.feedback_count > 0 AND i.error = '') AS mean_score,
    quantileOrNullIf(0.5)(f.mean_score, f.feedback_count > 0 AND i.error = '') AS p50_score,
    if(
        sumIf(f.thumbs, i.error = '') = 0,
        NULL,
        sumIf(f.thumbs_up, i.error = '') / sumIf(f.thumbs, i.error = '')
    ) AS thumbs_up_share,
    quantileOrNullIf(0.5)(i.latency_ms, i.error = '') AS p50_latency_ms,
    quantileOrNullIf(0.95)(i.latency_ms, i.error = '') AS p95_latency_ms,
    quantileOrNullIf(0.5)(i.time_to_first_token_ms, i.error = '') AS p50_ttft_ms,
    quantileOrNullIf(0.95)(i.time_to_first_token_ms, i.error = '') AS p95_ttft_ms,
    sumIf(i.prompt_tokens, i.error = '') AS prompt_tokens,
    sumIf(i.completion_tokens, i.error = '') AS completion_tokens,
    countIf(i.error != '') AS failed,
    countIf(i.error != '') / count() AS error_rate
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

-- usage_by_caller: a failed request's tokens were spent, so `requests`, the token sums and the cost
-- still count every request; `failed` (appended) says how many of them failed.
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
    anyIf(p.currency, p.has_price = 1) AS currency,
    countIf(i.error != '') AS failed
FROM
(
    SELECT
        occurred_at, user, producer, model, prompt_tokens, completion_tokens, error,
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
