"""What makes feedback acceptable, and how it is normalised."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

from llmops.contracts.events import FeedbackAccepted, FeedbackRejected, FeedbackSubmitted

# Feedback ids derived from the submitted event's id, so a redelivered event gets the same id.
_FEEDBACK_NAMESPACE = uuid.UUID("6f1b7c8e-2d4a-4e0b-9a51-0c3f5d1e7a92")
MAX_ID_CHARS = 128


def review(
    submitted: FeedbackSubmitted,
    *,
    max_text_chars: int,
    redact: Callable[[str], str],
) -> FeedbackAccepted | FeedbackRejected:
    """Accept ``submitted`` (normalised: score in [0, 1]) or reject it with every reason found.

    An accepted comment and correction are ``redact`` ed: the outcome leaves this service.
    """
    # The outcome follows the submission (its trace, its payload); the bus stamps producer.
    reasons: list[str] = []
    request_id = submitted.request_id.strip()
    if not request_id:
        reasons.append("request_id is empty: feedback must name the request_id of the answer it rates")
    elif len(request_id) > MAX_ID_CHARS:
        reasons.append(f"request_id is longer than {MAX_ID_CHARS} characters")
    if len(submitted.feedback_id) > MAX_ID_CHARS:
        reasons.append(f"feedback_id is longer than {MAX_ID_CHARS} characters")

    score: float | None = None
    if submitted.score is not None and submitted.thumb is not None:
        reasons.append("give either score or thumb, not both")
    elif submitted.score is not None:
        if not math.isfinite(submitted.score) or not 0.0 <= submitted.score <= 1.0:
            reasons.append(f"score must be between 0 and 1, got {submitted.score}")
        else:
            score = submitted.score
    elif submitted.thumb is not None:
        score = 1.0 if submitted.thumb == "up" else 0.0
    else:
        reasons.append("no signal: give a score (0..1) or a thumb (up/down)")

    for field in ("comment", "correction"):
        if len(getattr(submitted, field)) > max_text_chars:
            reasons.append(f"{field} is longer than {max_text_chars} characters")

    feedback_id = submitted.feedback_id or str(uuid.uuid5(_FEEDBACK_NAMESPACE, str(submitted.event_id)))
    if reasons or score is None:
        return FeedbackRejected.following(
            submitted, feedback_id=feedback_id, reasons=reasons, submitted_event_id=submitted.event_id
        )
    return FeedbackAccepted.following(
        submitted,
        feedback_id=feedback_id,
        request_id=request_id,
        score=score,
        comment=redact(submitted.comment),
        correction=redact(submitted.correction),
        submitted_event_id=submitted.event_id,
        occurred_at=submitted.occurred_at,
    )
