"""The delivery tables as an Alembic revision adds them to an existing store (revision 0002 of each
service that stores things): the outbox (:func:`llmops.core.outbox.outbox_table`) and the record of
handled events (:func:`llmops.core.handled_events.handled_table`).

Frozen: this is the schema of those tables as of that revision. A later change to them is a new
function here and a new revision in every store, never an edit of this one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmops.core.sql import AutoId, UTCDateTime


def add_delivery_tables(op: Any, service: str, *, outbox: bool = True, handled: bool = True) -> None:
    """Create ``<service>_outbox`` and/or ``<service>_handled_events`` with ``op`` (alembic.op)."""
    if outbox:
        op.create_table(
            f"{service}_outbox",
            sa.Column("id", AutoId, primary_key=True, autoincrement=True),
            sa.Column("topic", sa.String(255), nullable=False),
            sa.Column("key", sa.LargeBinary, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("created_at", UTCDateTime, nullable=False),
        )
    if handled:
        table = f"{service}_handled_events"
        op.create_table(
            table,
            sa.Column("consumer_group", sa.String(255), nullable=False),
            sa.Column("event_id", sa.String(64), nullable=False),
            sa.Column("handled_at", UTCDateTime, nullable=False),
            sa.PrimaryKeyConstraint("consumer_group", "event_id"),
        )
        op.create_index(f"ix_{table}_handled_at", table, ["handled_at"])
