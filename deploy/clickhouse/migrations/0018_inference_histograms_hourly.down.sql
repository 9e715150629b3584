DROP VIEW IF EXISTS inference_histograms_hourly_mv;
DROP TABLE IF EXISTS inference_histograms_hourly;
