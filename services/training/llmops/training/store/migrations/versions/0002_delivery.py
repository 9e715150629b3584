"""Delivery: its outbox and the record of handled events (llmops.core.outbox, llmops.core.handled_events)."""

from alembic import op

from llmops.core.delivery_migration import add_delivery_tables

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    add_delivery_tables(op, "training")
