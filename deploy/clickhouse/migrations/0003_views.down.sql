DROP VIEW IF EXISTS inference_with_feedback;
DROP VIEW IF EXISTS feedback_v;
DROP VIEW IF EXISTS inference_log_v;
