-- The registry's events: versions registered (models.version_registered), alias moves
-- (models.alias_changed) and canary changes (models.canary_changed), one table each, ReplacingMergeTree
-- on event_id as for every consumed topic and read through the _v views (FINAL); and two views of the
-- present state derived from them: model_aliases_current and model_canaries_current.
-- A version or alias version is NULL where the event has none (an alias removed, no champion yet).

CREATE TABLE IF NOT EXISTS model_versions
(
    event_id UUID,
    model String,
    version UInt32,
    occurred_at DateTime64(3, 'UTC'),
    artifact_uri String,
    base_model String,
    metrics Map(String, Float64),
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, version, event_id);

CREATE TABLE IF NOT EXISTS model_alias_changes
(
    event_id UUID,
    model String,
    alias String,
    occurred_at DateTime64(3, 'UTC'),
    version Nullable(UInt32),
    previous_version Nullable(UInt32),
    artifact_uri String,
    base_model String,
    actor String,
    reason String,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, alias, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS model_canary_changes
(
    event_id UUID,
    model String,
    alias String,
    occurred_at DateTime64(3, 'UTC'),
    challenger_alias String,
    share Float64,
    champion_version Nullable(UInt32),
    challenger_version Nullable(UInt32),
    active Bool,
    outcome LowCardinality(String),
    actor String,
    reason String,
    trace_id String,
    producer LowCardinality(String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (model, alias, occurred_at, event_id);

CREATE VIEW IF NOT EXISTS model_versions_v AS
SELECT
    event_id, model, version, occurred_at, artifact_uri, base_model, metrics, trace_id, producer,
    ingested_at
FROM model_versions FINAL;

CREATE VIEW IF NOT EXISTS model_alias_changes_v AS
SELECT
    event_id, model, alias, occurred_at, version, previous_version, artifact_uri, base_model, actor,
    reason, trace_id, producer, ingested_at
FROM model_alias_changes FINAL;

CREATE VIEW IF NOT EXISTS model_canary_changes_v AS
SELECT
    event_id, model, alias, occurred_at, challenger_alias, share, champion_version, challenger_version,
    active, outcome, actor, reason, trace_id, producer, ingested_at
FROM model_canary_changes FINAL;

-- Each alias's holder now: its latest change, unless that change removed it. The latest is taken as a
-- tuple (argMax skips a NULL argument, which would bring back the holder before a removal).
CREATE VIEW IF NOT EXISTS model_aliases_current AS
SELECT
    model, alias, tupleElement(latest, 1) AS version, tupleElement(latest, 2) AS artifact_uri,
    tupleElement(latest, 3) AS base_model, tupleElement(latest, 4) AS actor,
    tupleElement(latest, 5) AS reason, changed_at
FROM
(
    SELECT
        model,
        alias,
        argMax((version, artifact_uri, base_model, actor, reason), (occurred_at, ingested_at)) AS latest,
        max(occurred_at) AS changed_at
    FROM model_alias_changes FINAL
    GROUP BY model, alias
)
WHERE version IS NOT NULL;

-- Each alias's latest canary change: a running canary (active) or how the last one ended.
CREATE VIEW IF NOT EXISTS model_canaries_current AS
SELECT
    model, alias, tupleElement(latest, 1) AS challenger_alias, tupleElement(latest, 2) AS share,
    tupleElement(latest, 3) AS champion_version, tupleElement(latest, 4) AS challenger_version,
    tupleElement(latest, 5) AS active, tupleElement(latest, 6) AS outcome,
    tupleElement(latest, 7) AS actor, tupleElement(latest, 8) AS reason, changed_at
FROM
(
    SELECT
        model,
        alias,
        argMax(
            (challenger_alias, share, champion_version, challenger_version, active, outcome, actor, reason),
            (occurred_at, ingested_at)
        ) AS latest,
        max(occurred_at) AS changed_at
    FROM model_canary_changes FINAL
    GROUP BY model, alias
);
