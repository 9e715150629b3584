DROP VIEW IF EXISTS retrieval_log_v;
DROP TABLE IF EXISTS retrieval_log;
