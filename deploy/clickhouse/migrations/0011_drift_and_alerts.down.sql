DROP VIEW IF EXISTS alerts_v;
DROP VIEW IF EXISTS drift_reports_v;
DROP TABLE IF EXISTS alerts;
DROP TABLE IF EXISTS drift_reports;
