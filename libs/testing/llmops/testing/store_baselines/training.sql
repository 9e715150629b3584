-- The training store's schema as the release before migrations made it (SQLite, metadata.create_all).
-- Frozen: the baseline (revision 0001) that later revisions upgrade from.

CREATE TABLE jobs (
	id INTEGER NOT NULL,
	job_id VARCHAR(64) NOT NULL,
	idempotency_key VARCHAR(256),
	model_name VARCHAR(128) NOT NULL,
	spec JSON NOT NULL,
	state VARCHAR(16) NOT NULL,
	dataset_uri TEXT NOT NULL,
	base_model_path TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	started_at DATETIME,
	finished_at DATETIME,
	updated_at DATETIME NOT NULL,
	progress JSON,
	metrics JSON NOT NULL,
	adapter_uri TEXT NOT NULL,
	error TEXT NOT NULL,
	ray_run_name VARCHAR(128) NOT NULL,
	attempts INTEGER NOT NULL,
	registered_version INTEGER NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (job_id),
	UNIQUE (idempotency_key)
);

CREATE INDEX ix_jobs_state ON jobs (state, id);

CREATE INDEX ix_jobs_model ON jobs (model_name, id);

