"""FeedbackService over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from llmops.contracts.events import FeedbackAccepted, FeedbackSubmitted
from llmops.contracts.rpc.feedback.v1 import feedback_pb2, feedback_pb2_grpc
from llmops.core.convert import copy_fields
from llmops.core.errors import InvalidArgument
from llmops.core.service import Deferred
from llmops.feedback.domain.review import review
from llmops.feedback.store import FeedbackStore

_THUMBS = {feedback_pb2.THUMB_UP: "up", feedback_pb2.THUMB_DOWN: "down"}


class FeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(
        self, store: Deferred[FeedbackStore], max_text_chars: int, redact: Callable[[str], str]
    ) -> None:
        self._store = store
        self._max_text_chars = max_text_chars
        self._redact = redact

    async def Submit(
        self, request: feedback_pb2.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> feedback_pb2.SubmitFeedbackResponse:
        # An unspecified (or unknown) thumb is no thumb; review() then says what is missing.
        submitted = copy_fields(FeedbackSubmitted, request, thumb=_THUMBS.get(request.thumb))
        outcome = review(submitted, max_text_chars=self._max_text_chars, redact=self._redact)
        # Kept in the outbox until Kafka has it: an accepted submission is never lost, and the caller
        # gets no error while the broker is away. A rejection is published as well (the event trail
        # matches the Kafka path); the caller learns why.
        await asyncio.to_thread(self._store().record_outcome, outcome)
        if not isinstance(outcome, FeedbackAccepted):
            raise InvalidArgument("; ".join(outcome.reasons))
        return feedback_pb2.SubmitFeedbackResponse(feedback_id=outcome.feedback_id, score=outcome.score)
