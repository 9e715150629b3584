-- The labeling store's schema as the release before migrations made it (SQLite, metadata.create_all).
-- Frozen: the baseline (revision 0001) that later revisions upgrade from.

CREATE TABLE queues (
	id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	task_type VARCHAR(32) NOT NULL,
	label_set JSON NOT NULL,
	rating_min FLOAT NOT NULL,
	rating_max FLOAT NOT NULL,
	labelers_per_task INTEGER NOT NULL,
	lease_seconds INTEGER NOT NULL,
	instructions TEXT NOT NULL,
	metadata JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name)
);

CREATE TABLE dataset_versions (
	id INTEGER NOT NULL,
	version_id VARCHAR(128) NOT NULL,
	dataset VARCHAR(256) NOT NULL,
	task_type VARCHAR(32) NOT NULL,
	train_count BIGINT NOT NULL,
	eval_count BIGINT NOT NULL,
	eval_fraction FLOAT NOT NULL,
	seed BIGINT NOT NULL,
	uri TEXT NOT NULL,
	description TEXT NOT NULL,
	lineage JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (version_id)
);

CREATE INDEX ix_dataset_versions_dataset ON dataset_versions (dataset, id);

CREATE TABLE tasks (
	id INTEGER NOT NULL,
	task_id VARCHAR(64) NOT NULL,
	queue_id INTEGER NOT NULL,
	document_id VARCHAR(256),
	text TEXT NOT NULL,
	prompt TEXT NOT NULL,
	response TEXT NOT NULL,
	candidate_a TEXT NOT NULL,
	candidate_b TEXT NOT NULL,
	metadata JSON NOT NULL,
	snapshot_id VARCHAR(256) NOT NULL,
	source VARCHAR(16) NOT NULL,
	state VARCHAR(16) NOT NULL,
	human_label_count INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	completed_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT uq_tasks_queue_document UNIQUE (queue_id, document_id),
	UNIQUE (task_id),
	FOREIGN KEY(queue_id) REFERENCES queues (id)
);

CREATE INDEX ix_tasks_queue_state ON tasks (queue_id, state, id);

CREATE TABLE labeling_functions (
	id INTEGER NOT NULL,
	queue_id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	version VARCHAR(64) NOT NULL,
	registered_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_labeling_functions UNIQUE (queue_id, name, version),
	FOREIGN KEY(queue_id) REFERENCES queues (id)
);

CREATE TABLE labels (
	id INTEGER NOT NULL,
	label_id VARCHAR(64) NOT NULL,
	task_pk INTEGER NOT NULL,
	queue_id INTEGER NOT NULL,
	source VARCHAR(8) NOT NULL,
	labeler_id VARCHAR(256) NOT NULL,
	value TEXT NOT NULL,
	comment TEXT NOT NULL,
	confidence FLOAT NOT NULL,
	metadata JSON NOT NULL,
	lease_id VARCHAR(64),
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_labels_task_source_labeler UNIQUE (task_pk, source, labeler_id),
	UNIQUE (label_id),
	FOREIGN KEY(task_pk) REFERENCES tasks (id),
	FOREIGN KEY(queue_id) REFERENCES queues (id)
);

CREATE INDEX ix_labels_queue ON labels (queue_id, id);

CREATE TABLE leases (
	lease_id VARCHAR(64) NOT NULL,
	task_pk INTEGER NOT NULL,
	queue_id INTEGER NOT NULL,
	labeler_id VARCHAR(256) NOT NULL,
	created_at DATETIME NOT NULL,
	expires_at DATETIME NOT NULL,
	released_at DATETIME,
	outcome VARCHAR(16),
	PRIMARY KEY (lease_id),
	FOREIGN KEY(task_pk) REFERENCES tasks (id),
	FOREIGN KEY(queue_id) REFERENCES queues (id)
);

CREATE INDEX ix_leases_task_active ON leases (task_pk, released_at, expires_at);

CREATE INDEX ix_leases_queue_labeler ON leases (queue_id, labeler_id, released_at);

CREATE TABLE skips (
	id INTEGER NOT NULL,
	task_pk INTEGER NOT NULL,
	labeler_id VARCHAR(256) NOT NULL,
	lease_id VARCHAR(64) NOT NULL,
	reason TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_skips_task_labeler UNIQUE (task_pk, labeler_id),
	FOREIGN KEY(task_pk) REFERENCES tasks (id)
);

