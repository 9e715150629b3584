"""The feedback service's database: only what delivery needs (its outbox and its record of handled
events), so an accepted submission is kept until Kafka has it, also while the broker is away."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData

from llmops.contracts.events import FeedbackAccepted, FeedbackRejected
from llmops.core.handled_events import handled_table
from llmops.core.outbox import outbox_table
from llmops.core.sql import SqlStore

metadata = MetaData()
outbox_t = outbox_table(metadata, "feedback")
handled_t = handled_table(metadata, "feedback")


class FeedbackStore(SqlStore):
    metadata = metadata
    migrations = Path(__file__).parent / "migrations"
    service = "feedback"

    def record_outcome(self, outcome: FeedbackAccepted | FeedbackRejected) -> None:
        """Queue the review's outcome for Kafka; from the feedback.submitted consumer, the event's
        handled mark commits with it, so a redelivered submission is not reviewed twice."""
        with self._write() as conn:
            self._mark_handled(conn)
            self._announce(conn, outcome)
