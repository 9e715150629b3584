-- The registry store's schema as the release before migrations made it (SQLite, metadata.create_all).
-- Frozen: the baseline (revision 0001) that later revisions upgrade from.

CREATE TABLE registered_models (
	id INTEGER NOT NULL,
	name VARCHAR(200) NOT NULL,
	description TEXT NOT NULL,
	base_model TEXT NOT NULL,
	gate JSON NOT NULL,
	latest_version BIGINT NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name)
);

CREATE TABLE lineage_dataset_versions (
	version_id VARCHAR(256) NOT NULL,
	dataset VARCHAR(256) NOT NULL,
	uri TEXT NOT NULL,
	train_count BIGINT NOT NULL,
	eval_count BIGINT NOT NULL,
	snapshot_ids JSON NOT NULL,
	queues JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (version_id)
);

CREATE TABLE lineage_ingestion_batches (
	batch_id VARCHAR(256) NOT NULL,
	dataset VARCHAR(256) NOT NULL,
	snapshot_id VARCHAR(256) NOT NULL,
	snapshot_uri TEXT NOT NULL,
	counts JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (batch_id)
);

CREATE INDEX ix_lineage_ingestion_batches_snapshot_id ON lineage_ingestion_batches (snapshot_id);

CREATE TABLE registry_outbox (
	id INTEGER NOT NULL,
	topic VARCHAR(255) NOT NULL,
	"key" BLOB NOT NULL,
	payload TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE model_versions (
	id INTEGER NOT NULL,
	model_id INTEGER NOT NULL,
	version BIGINT NOT NULL,
	artifact_uri TEXT NOT NULL,
	base_model TEXT NOT NULL,
	adapter BOOLEAN NOT NULL,
	adapter_kind VARCHAR(64) NOT NULL,
	metrics JSON NOT NULL,
	params JSON NOT NULL,
	status VARCHAR(16) NOT NULL,
	training_job_id VARCHAR(256),
	dataset_version_id VARCHAR(256) NOT NULL,
	description TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	trained_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT uq_model_versions_model_version UNIQUE (model_id, version),
	FOREIGN KEY(model_id) REFERENCES registered_models (id),
	UNIQUE (training_job_id)
);

CREATE INDEX ix_model_versions_status ON model_versions (status, id);

CREATE TABLE model_aliases (
	model_id INTEGER NOT NULL,
	alias VARCHAR(64) NOT NULL,
	version BIGINT NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_model_aliases PRIMARY KEY (model_id, alias),
	FOREIGN KEY(model_id) REFERENCES registered_models (id)
);

CREATE TABLE model_alias_changes (
	id INTEGER NOT NULL,
	model_id INTEGER NOT NULL,
	alias VARCHAR(64) NOT NULL,
	from_version BIGINT NOT NULL,
	to_version BIGINT NOT NULL,
	actor TEXT NOT NULL,
	reason TEXT NOT NULL,
	operation VARCHAR(16) NOT NULL,
	changed_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(model_id) REFERENCES registered_models (id)
);

CREATE INDEX ix_model_alias_changes_model_alias ON model_alias_changes (model_id, alias, id);

