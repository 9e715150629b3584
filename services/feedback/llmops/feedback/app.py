"""Feedback service: feedback.submitted in, feedback.accepted or feedback.rejected out."""

from __future__ import annotations

import asyncio
import logging

from llmops.contracts.events import FeedbackAccepted, FeedbackRejected, FeedbackSubmitted
from llmops.contracts.rpc.feedback.v1 import feedback_pb2_grpc
from llmops.core.service import Deferred, Runtime
from llmops.feedback.domain.review import review
from llmops.feedback.grpc_server import FeedbackServicer
from llmops.feedback.settings import Settings
from llmops.feedback.store import FeedbackStore

log = logging.getLogger(__name__)


class FeedbackService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Deferred[FeedbackStore] = Deferred("the feedback store")

    def register(self, runtime: Runtime) -> None:
        redact = self.settings.redactor()
        runtime.grpc.add(
            feedback_pb2_grpc.add_FeedbackServiceServicer_to_server,
            FeedbackServicer(self.store, self.settings.max_text_chars, redact),
            "llmops.feedback.v1.FeedbackService",
        )

        async def on_submitted(event: FeedbackSubmitted) -> None:
            outcome = review(event, max_text_chars=self.settings.max_text_chars, redact=redact)
            await asyncio.to_thread(self.store().record_outcome, outcome)
            if not isinstance(outcome, FeedbackAccepted):
                log.info("rejected feedback for %s: %s", event.request_id, "; ".join(outcome.reasons))

        # The group without a purpose is the one this service has always used: a new name would start
        # from the earliest offset and review every submission again.
        runtime.bus.consume(FeedbackSubmitted, self.settings.consumer_group(), on_submitted)
        runtime.bus.publishes(FeedbackAccepted, FeedbackRejected)

    async def start(self, runtime: Runtime) -> None:
        store = self.store.set(runtime.own(FeedbackStore(self.settings.resolved_database_url())))
        runtime.deliver_with(store)
