DROP VIEW IF EXISTS judge_scores_v;
DROP TABLE IF EXISTS judge_scores;
