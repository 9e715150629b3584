"""Ingestion's tables as the release before migrations made them (metadata.create_all)."""

import sqlalchemy as sa
from alembic import op

from llmops.core.sql import UTCDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "ingestion_batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source_description", sa.String(1000), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("snapshot_id", sa.String(80), nullable=False),
        sa.Column("snapshot_uri", sa.String(1000), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_ingestion_batches_dataset", "ingestion_batches", ["dataset"])
    op.create_table(
        "ingestion_seen_hashes",
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("document_id", sa.String(500), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingestion_seen_hashes")
    op.drop_index("ix_ingestion_batches_dataset", table_name="ingestion_batches")
    op.drop_table("ingestion_batches")
