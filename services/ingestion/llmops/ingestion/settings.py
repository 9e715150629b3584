"""Ingestion service settings (prefix ``LLMOPS_INGESTION_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS, ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("ingestion")
    service_name = "ingestion"

    grpc_port: int = Field(DEFAULT_GRPC_PORTS["ingestion"], ge=1, le=65535)
    metrics_port: int = Field(DEFAULT_METRICS_PORTS["ingestion"], ge=0, le=65535)
