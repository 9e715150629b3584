"""Labeling settings (prefix ``LLMOPS_LABELING_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import DatabaseSettings, ServiceSettings


class Settings(ServiceSettings, DatabaseSettings):
    service_name = "labeling"

    # Feedback that becomes a review task: a score at or below this, or any correction.
    review_max_score: float = Field(0.5, ge=0, le=1)
    feedback_review_queue: str = Field("feedback-review", min_length=1)
    # Two answers to one prompt (same registered model) whose feedback scores differ by at least
    # pair_min_score_gap become a preference task here; "" turns preference pairs off.
    feedback_pairs_queue: str = "feedback-pairs"
    pair_min_score_gap: float = Field(0.1, gt=0, le=1)
    # At most this many pairs per feedback (the other answers with the largest score gap first),
    # among answers rated in the pair_lookback_days before the feedback (labeling keeps the scores).
    pairs_per_feedback: int = Field(3, ge=1, le=100)
    pair_lookback_days: int = Field(30, ge=1)
    # How long to wait for the answer a piece of feedback refers to to reach monitoring.
    inference_lookup_seconds: float = Field(10.0, ge=0)
    # Python modules whose @labeling_function definitions are registered at start.
    function_modules: list[str] = Field(default_factory=list)
    judge_timeout_seconds: float = Field(120.0, gt=0)
