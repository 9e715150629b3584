DROP TABLE IF EXISTS inference_log;
