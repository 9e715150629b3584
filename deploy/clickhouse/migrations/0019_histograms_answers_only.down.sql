-- Back to 0018: the view counts every request logged, failures included, and the table is rebuilt
-- from every deduplicated row.
DROP VIEW IF EXISTS inference_histograms_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS inference_histograms_hourly_mv TO inference_histograms_hourly AS
SELECT model, toStartOfHour(occurred_at) AS hour, model_version, arm, s.1 AS signal, s.2 AS bin,
    count() AS count
FROM inference_log
ARRAY JOIN [
    ('prompt_tokens', toInt32(least(prompt_tokens, 1048576))),
    ('completion_tokens', toInt32(least(completion_tokens, 1048576))),
    ('latency_ms', if(latency_ms > 0, toInt32(least(floor(log2(latency_ms) * 64), 100000)), -100001)),
    ('time_to_first_token_ms',
        if(time_to_first_token_ms > 0, toInt32(least(floor(log2(time_to_first_token_ms) * 64), 100000)), -100001))
] AS s
GROUP BY model, hour, model_version, arm, signal, bin;

TRUNCATE TABLE IF EXISTS inference_histograms_hourly;

INSERT INTO inference_histograms_hourly
SELECT model, toStartOfHour(occurred_at) AS hour, model_version, arm, s.1 AS signal, s.2 AS bin,
    count() AS count
FROM inference_log FINAL
ARRAY JOIN [
    ('prompt_tokens', toInt32(least(prompt_tokens, 1048576))),
    ('completion_tokens', toInt32(least(completion_tokens, 1048576))),
    ('latency_ms', if(latency_ms > 0, toInt32(least(floor(log2(latency_ms) * 64), 100000)), -100001)),
    ('time_to_first_token_ms',
        if(time_to_first_token_ms > 0, toInt32(least(floor(log2(time_to_first_token_ms) * 64), 100000)), -100001))
] AS s
GROUP BY model, hour, model_version, arm, signal, bin;
