"""Delivery: the record of handled events (the outbox was there before); see llmops.core.outbox."""

from alembic import op

from llmops.core.delivery_migration import add_delivery_tables

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    add_delivery_tables(op, "registry", outbox=False)
