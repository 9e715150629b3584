-- The ingestion store's schema as the release before migrations made it (SQLite, metadata.create_all).
-- Frozen: the baseline (revision 0001) that later revisions upgrade from.

CREATE TABLE ingestion_batches (
	batch_id VARCHAR(64) NOT NULL,
	dataset VARCHAR(200) NOT NULL,
	state VARCHAR(16) NOT NULL,
	source_description VARCHAR(1000) NOT NULL,
	metadata JSON NOT NULL,
	counts JSON NOT NULL,
	errors JSON NOT NULL,
	snapshot_id VARCHAR(80) NOT NULL,
	snapshot_uri VARCHAR(1000) NOT NULL,
	created_at DATETIME NOT NULL,
	completed_at DATETIME,
	PRIMARY KEY (batch_id)
);

CREATE INDEX ix_ingestion_batches_dataset ON ingestion_batches (dataset);

CREATE TABLE ingestion_seen_hashes (
	content_hash VARCHAR(64) NOT NULL,
	document_id VARCHAR(500) NOT NULL,
	batch_id VARCHAR(64) NOT NULL,
	PRIMARY KEY (content_hash)
);

