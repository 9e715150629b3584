-- usage_by_caller priced answers by inference_log.model, the name the request used: `bot@challenger`
-- or `bot/3` found no price for `bot`. A price now applies to the registered model's name, the
-- requested name without its `@alias` or `/version` (a base model's name is kept as it is).
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
