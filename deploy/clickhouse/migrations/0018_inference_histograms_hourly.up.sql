-- inference_histograms_hourly: per hour, model, version and arm, how many answers fell in each bin of
-- the four numeric drift signals, filled at insert time by a materialized view. Drift reads a week
-- of histograms (thousands of rows) instead of a million answers.
--
-- Bins: token counts are their own bin (exact) up to 1,048,576, above which they share one overflow
-- bin; latency and time to first token fall in log-spaced bins, bin = floor(log2(ms) * 64) (edges
-- 2^(bin/64): each about 1.1% wide), values <= 0 (and NaN) in bin -100001, huge ones capped at
-- 100000. llmops.monitoring.drift computes PSI and KS from them and states the error.
--
-- The view counts every row inserted, and a redelivered event is inserted twice, while
-- inference_log collapses it on merge (FINAL). Drift therefore checks each hour's histogram count
-- against the deduplicated row count and reads the hours that disagree from the rows themselves.
-- SummingMergeTree adds rows of one key as parts merge; readers still sum(count) with GROUP BY.
CREATE TABLE IF NOT EXISTS inference_histograms_hourly
(
    model LowCardinality(String),
    hour DateTime('UTC'),
    model_version String,
    arm LowCardinality(String),
    signal LowCardinality(String),
    bin Int32,
    count UInt64
)
ENGINE = SummingMergeTree(count)
PARTITION BY toYYYYMM(hour)
ORDER BY (model, hour, model_version, arm, signal, bin);

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

-- Answers logged before this migration, once each.
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
