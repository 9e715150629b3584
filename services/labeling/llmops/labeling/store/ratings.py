"""Answer ratings in SQL: the feedback scores labeling handled, with the answers they rate, which
preference pairs are made from (see domain.feedback and answer_ratings_t)."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import Connection, func, insert, select

from llmops.core.sql import SqlStore
from llmops.labeling.domain.feedback import Answer, RatedAnswer, Rating
from llmops.labeling.store.tables import answer_ratings_t as r


def prompt_digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


def insert_rating(conn: Connection, rating: Rating) -> None:
    """Record one feedback's score of its answer; a feedback already recorded (redelivered) is kept."""
    if conn.execute(select(r.c.id).where(r.c.feedback_id == rating.feedback_id)).first() is not None:
        return
    a = rating.answer
    conn.execute(
        insert(r).values(
            feedback_id=rating.feedback_id, request_id=a.request_id, registered_model=a.registered_model,
            prompt_digest=prompt_digest(a.prompt), prompt=a.prompt, completion=a.completion, model=a.model,
            model_version=a.model_version, arm=a.arm, score=rating.score, rated_at=rating.rated_at,
        )
    )  # fmt: skip


class SqlRatings(SqlStore):
    """Reading the answer ratings back (they are written with the feedback's tasks, in labels.py)."""

    def answer_scores(self, request_id: str) -> dict[str, float]:
        """The recorded scores of one answer, by feedback id."""
        with self._read() as conn:
            rows = conn.execute(select(r.c.feedback_id, r.c.score).where(r.c.request_id == request_id)).all()
        return {feedback_id: float(score) for feedback_id, score in rows}

    def rated_answers(
        self, answer: Answer, *, score: float, min_score_gap: float, since: dt.datetime, limit: int
    ) -> list[RatedAnswer]:
        """Other answers to ``answer``'s prompt from its registered model, rated since ``since``,
        each with the mean of its scores, at least ``min_score_gap`` from ``score``: the largest gaps
        first, at most ``limit``."""
        mean = func.avg(r.c.score)
        gap = func.abs(mean - score)
        query = (
            select(
                r.c.request_id, func.max(r.c.model), func.max(r.c.model_version), func.max(r.c.arm),
                func.max(r.c.prompt), func.max(r.c.completion), mean,
            )
            .where(
                r.c.registered_model == answer.registered_model,
                r.c.prompt_digest == prompt_digest(answer.prompt),
                r.c.request_id != answer.request_id,
                r.c.rated_at >= since,
            )
            .group_by(r.c.request_id)
            .having(gap >= min_score_gap)
            .order_by(gap.desc(), r.c.request_id)
            .limit(limit)
        )  # fmt: skip
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            RatedAnswer(
                Answer(
                    request_id=rid,
                    model=model,
                    prompt=prompt,
                    completion=completion,
                    model_version=version,
                    arm=arm,
                ),
                float(mean_score),
            )  # fmt: skip
            for rid, model, version, arm, prompt, completion, mean_score in rows
        ]
