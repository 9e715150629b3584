"""Canaries (one per model alias) and prompt templates (numbered versions and aliases).

Frozen: the tables as of this revision, written out rather than imported from ``tables.py`` (which
moves on with later revisions).
"""

import sqlalchemy as sa
from alembic import op

from llmops.core.sql import AutoId, UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "model_canaries",
        sa.Column("model_id", AutoId, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("challenger_alias", sa.String(64), nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_canaries"),
        sa.UniqueConstraint("model_id", "challenger_alias", name="uq_model_canaries_challenger"),
    )
    op.create_table(
        "prompt_templates",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("latest_version", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "prompt_template_versions",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("template_id", AutoId, sa.ForeignKey("prompt_templates.id"), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("system", sa.Text, nullable=False),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("template_id", "version", name="uq_prompt_template_versions_template_version"),
    )
    op.create_table(
        "prompt_template_aliases",
        sa.Column("template_id", AutoId, sa.ForeignKey("prompt_templates.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("template_id", "alias", name="pk_prompt_template_aliases"),
    )
