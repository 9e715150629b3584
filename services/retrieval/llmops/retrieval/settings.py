"""Retrieval service settings (prefix ``LLMOPS_RETRIEVAL_``)."""

from __future__ import annotations

from llmops.core.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name = "retrieval"
