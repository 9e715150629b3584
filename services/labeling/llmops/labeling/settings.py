"""Labeling settings (prefix ``LLMOPS_LABELING_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import DatabaseSettings, ServiceSettings


class Settings(ServiceSettings, DatabaseSettings):
    service_name = "labeling"

    # Feedback that becomes a review task: a score at or below this, or any correction.
    review_max_score: float = Field(0.5, ge=0, le=1)
    feedback_review_queue: str = Field("feedback-review", min_length=1)
    # How long to wait for the answer a piece of feedback refers to to reach monitoring.
    inference_lookup_seconds: float = Field(10.0, ge=0)
    # Python modules whose @labeling_function definitions are registered at start.
    function_modules: list[str] = Field(default_factory=list)
    judge_timeout_seconds: float = Field(120.0, gt=0)
