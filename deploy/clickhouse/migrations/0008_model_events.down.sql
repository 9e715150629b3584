DROP VIEW IF EXISTS model_canaries_current;
DROP VIEW IF EXISTS model_aliases_current;
DROP VIEW IF EXISTS model_canary_changes_v;
DROP VIEW IF EXISTS model_alias_changes_v;
DROP VIEW IF EXISTS model_versions_v;
DROP TABLE IF EXISTS model_canary_changes;
DROP TABLE IF EXISTS model_alias_changes;
DROP TABLE IF EXISTS model_versions;
