-- usage_by_caller as 0012 made it.
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
FROM inference_log AS i FINAL
ASOF LEFT JOIN
(
    SELECT
        model, valid_from, prompt_price_per_1m_tokens, completion_price_per_1m_tokens, currency,
        toUInt8(1) AS has_price
    FROM model_prices FINAL
) AS p ON i.model = p.model AND i.occurred_at >= p.valid_from
GROUP BY day, user, producer, model;
