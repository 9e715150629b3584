"""Feedback service settings (prefix ``LLMOPS_FEEDBACK_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS, ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("feedback")
    service_name = "feedback"

    grpc_port: int = Field(DEFAULT_GRPC_PORTS["feedback"], ge=1, le=65535)
    metrics_port: int = Field(DEFAULT_METRICS_PORTS["feedback"], ge=0, le=65535)
    max_text_chars: int = Field(4000, ge=1, description="Longest comment or correction accepted.")
