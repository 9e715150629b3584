DROP VIEW IF EXISTS feedback_rejected_v;
DROP TABLE IF EXISTS feedback_rejected;
