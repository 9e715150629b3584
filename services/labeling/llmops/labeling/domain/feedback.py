"""Feedback into training data: review tasks (labeled at once with the user's correction) and
preference pairs from two differently rated answers to one prompt.

What a feedback gives:

* A review task in the CORRECTION queue when its score is at or below the review threshold or it
  carries a correction. With a correction (and the answer's prompt known), the task gets a FEEDBACK
  label whose value is the correction, so a dataset version over that queue holds
  (prompt, corrected answer) without waiting for a reviewer; a reviewer's label on the task wins.
* A preference task in the PAIRWISE_PREFERENCE queue for each other rated answer to the same prompt
  from the same registered model whose score differs by at least the minimum gap; its FEEDBACK label
  prefers the better rated answer. A labeler's choice on the task wins.

Task metadata names the registered model (the requested name without ``@alias`` or ``/version``),
the model version and arm that answered, and the feedback's time, so a dataset version can be asked
for "model X" with the filter ``{"registered_model": "X"}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmops.contracts.events import FeedbackAccepted
from llmops.labeling.domain.models import (
    DerivedLabel,
    DerivedTask,
    LabelSource,
    Preference,
    TaskInput,
    TaskSource,
)
from llmops.labeling.domain.values import MAX_CORRECTION_CHARS

# The labeler ids of labels derived from feedback (lineage shows them).
CORRECTION_LABELER = "feedback:correction"
PREFERENCE_LABELER = "feedback:scores"
# Same rule as ClickHouse's replaceRegexpOne(model, '(@.*|/[0-9]+)$', '') (see docs/analytics.md).
_ALIAS_OR_VERSION = re.compile(r"(@.*|/[0-9]+)$")


def registered_model(model: str) -> str:
    """The registered model's name in a requested name: ``bot@champion`` and ``bot/3`` are ``bot``."""
    return _ALIAS_OR_VERSION.sub("", model, count=1)


@dataclass(frozen=True)
class Answer:
    """One logged answer (a row of monitoring's inference log)."""

    request_id: str
    model: str
    prompt: str
    completion: str
    model_version: str = ""
    arm: str = ""
    # Set when serving failed the request: its partial text is no answer to prefer or reject.
    error: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> Answer:
        return cls(
            request_id=row.get("request_id", ""),
            model=row.get("model", ""),
            prompt=row.get("prompt", ""),
            completion=row.get("completion", ""),
            model_version=row.get("model_version", ""),
            arm=row.get("arm", ""),
            error=row.get("error", ""),
        )

    @property
    def registered_model(self) -> str:
        return registered_model(self.model)


@dataclass(frozen=True)
class Rating:
    """One feedback's score of an answer, as labeling records it for later pairs."""

    feedback_id: str
    answer: Answer
    score: float
    rated_at: dt.datetime


@dataclass(frozen=True)
class RatedAnswer:
    answer: Answer
    # The mean of the answer's feedback scores, in [0, 1].
    score: float


def review_task(queue: str, event: FeedbackAccepted, answer: Answer | None) -> DerivedTask:
    """The review task of ``event``, labeled with the user's correction when there is one to use."""
    metadata = {
        "request_id": event.request_id,
        "feedback_id": event.feedback_id,
        "feedback_score": repr(event.score),
        "feedback_at": event.occurred_at.isoformat(),
    }
    if event.comment:
        metadata["user_comment"] = event.comment
    if event.correction:
        metadata["user_correction"] = event.correction
    if answer is None:
        metadata["inference_missing"] = "true"
    else:
        metadata.update(_answered_by(answer))
    task = TaskInput(
        # Feedback ids are stable across redelivery, so the same feedback never makes two tasks.
        document_id=f"feedback:{event.feedback_id}",
        prompt=answer.prompt if answer else "",
        response=(answer.completion if answer else "") or event.correction,
        metadata=metadata,
        source=TaskSource.FEEDBACK,
    )
    label = None
    # Without the prompt the pair would teach nothing; a correction too long to store waits for a human.
    if answer is not None and answer.prompt and event.correction.strip():
        if len(event.correction) <= MAX_CORRECTION_CHARS:
            label = DerivedLabel(
                LabelSource.FEEDBACK,
                CORRECTION_LABELER,
                event.correction,
                confidence=1.0,
                metadata={"feedback_id": event.feedback_id},
            )
    return DerivedTask(queue, task, label)


def preference_pairs(
    queue: str,
    event: FeedbackAccepted,
    answer: Answer,
    others: Sequence[RatedAnswer],
    *,
    min_score_gap: float,
    limit: int,
    score: float | None = None,
) -> list[DerivedTask]:
    """Preference tasks between ``answer`` and ``others``, each with the mean of its scores.

    ``score`` is ``answer``'s mean score with this feedback's (``event.score`` when it has no other),
    so answers are compared mean with mean: one low rating of an answer users otherwise like does
    not make it the rejected side. Only other answers to the same prompt from the same registered
    model, with a different text and a score at least ``min_score_gap`` away, pair up; the largest
    gaps first, at most ``limit``. Each
    pair's candidates are ordered by request id and its document id is derived from both, so the same
    two answers make one task whichever feedback finds them, and however often.
    """
    mine = event.score if score is None else score
    current = RatedAnswer(answer, mine)
    eligible = [
        other
        for other in others
        if other.answer.request_id != answer.request_id
        and other.answer.prompt == answer.prompt
        and other.answer.registered_model == answer.registered_model
        and other.answer.completion.strip() != answer.completion.strip()
        and abs(other.score - mine) >= min_score_gap
    ]
    eligible.sort(key=lambda o: (-abs(o.score - mine), o.answer.request_id))
    tasks = []
    for other in eligible[: max(limit, 0)]:
        a, b = sorted((current, other), key=lambda r: r.answer.request_id)
        digest = hashlib.sha256(f"{a.answer.request_id}\x00{b.answer.request_id}".encode()).hexdigest()
        metadata = {
            "registered_model": answer.registered_model,
            "request_id_a": a.answer.request_id,
            "request_id_b": b.answer.request_id,
            "model_a": a.answer.model,
            "model_b": b.answer.model,
            "model_version_a": a.answer.model_version,
            "model_version_b": b.answer.model_version,
            "arm_a": a.answer.arm,
            "arm_b": b.answer.arm,
            "score_a": repr(a.score),
            "score_b": repr(b.score),
            # The feedback that completed the pair (the later of the two, as labeling saw them).
            "feedback_id": event.feedback_id,
            "feedback_at": event.occurred_at.isoformat(),
        }
        # Filters on one version or arm match a pair only when both answers came from it.
        for key in ("model_version", "arm"):
            if metadata[f"{key}_a"] == metadata[f"{key}_b"]:
                metadata[key] = metadata[f"{key}_a"]
        task = TaskInput(
            document_id=f"feedback-pair:{digest[:40]}",
            prompt=answer.prompt,
            candidate_a=a.answer.completion,
            candidate_b=b.answer.completion,
            metadata=metadata,
            source=TaskSource.FEEDBACK,
        )
        label = DerivedLabel(
            LabelSource.FEEDBACK,
            PREFERENCE_LABELER,
            Preference.A if a.score > b.score else Preference.B,
            confidence=min(abs(a.score - b.score), 1.0),
            metadata={"score_a": repr(a.score), "score_b": repr(b.score)},
        )
        tasks.append(DerivedTask(queue, task, label))
    return tasks


def _answered_by(answer: Answer) -> dict[str, str]:
    return {
        # The name the request used (as before), and the registered model it names.
        "model": answer.model,
        "registered_model": answer.registered_model,
        "model_version": answer.model_version,
        "arm": answer.arm,
    }
