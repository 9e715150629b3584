DROP VIEW IF EXISTS drift_results_v;
DROP TABLE IF EXISTS drift_results;
