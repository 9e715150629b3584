"""Feedback service settings (prefix ``LLMOPS_FEEDBACK_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import DatabaseSettings, ServiceSettings


class Settings(ServiceSettings, DatabaseSettings):
    service_name = "feedback"

    max_text_chars: int = Field(4000, ge=1, description="Longest comment or correction accepted.")
