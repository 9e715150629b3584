"""The registry's tables as the release before migrations made them (metadata.create_all)."""

import sqlalchemy as sa
from alembic import op

from llmops.core.sql import AutoId, UTCDateTime, auto_id

revision = "0001"
down_revision = None

# llmops.registry.domain.values.MAX_ID_CHARS when this revision was written; a revision is frozen.
ID_CHARS = 256


def upgrade() -> None:
    op.create_table(
        "registered_models",
        auto_id(),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("gate", sa.JSON, nullable=False),
        sa.Column("latest_version", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "model_versions",
        auto_id(),
        sa.Column("model_id", AutoId, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("adapter", sa.Boolean, nullable=False),
        sa.Column("adapter_kind", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("training_job_id", sa.String(ID_CHARS), unique=True),
        sa.Column("dataset_version_id", sa.String(ID_CHARS), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("trained_at", UTCDateTime),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status", "id"])
    op.create_table(
        "model_aliases",
        sa.Column("model_id", AutoId, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
    )
    op.create_table(
        "model_alias_changes",
        auto_id(),
        sa.Column("model_id", AutoId, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.BigInteger, nullable=False),
        sa.Column("to_version", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("changed_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_model_alias_changes_model_alias", "model_alias_changes", ["model_id", "alias", "id"])
    op.create_table(
        "lineage_dataset_versions",
        sa.Column("version_id", sa.String(ID_CHARS), primary_key=True),
        sa.Column("dataset", sa.String(ID_CHARS), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("train_count", sa.BigInteger, nullable=False),
        sa.Column("eval_count", sa.BigInteger, nullable=False),
        sa.Column("snapshot_ids", sa.JSON, nullable=False),
        sa.Column("queues", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "lineage_ingestion_batches",
        sa.Column("batch_id", sa.String(ID_CHARS), primary_key=True),
        sa.Column("dataset", sa.String(ID_CHARS), nullable=False),
        sa.Column("snapshot_id", sa.String(ID_CHARS), nullable=False),
        sa.Column("snapshot_uri", sa.Text, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_lineage_ingestion_batches_snapshot_id", "lineage_ingestion_batches", ["snapshot_id"])
    op.create_table(
        "registry_outbox",
        auto_id(),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_outbox")
    op.drop_index("ix_lineage_ingestion_batches_snapshot_id", table_name="lineage_ingestion_batches")
    op.drop_table("lineage_ingestion_batches")
    op.drop_table("lineage_dataset_versions")
    op.drop_index("ix_model_alias_changes_model_alias", table_name="model_alias_changes")
    op.drop_table("model_alias_changes")
    op.drop_table("model_aliases")
    op.drop_index("ix_model_versions_status", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
