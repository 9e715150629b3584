"""Registry service settings (prefix ``LLMOPS_REGISTRY_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS, ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("registry")
    service_name = "registry"

    grpc_port: int = Field(DEFAULT_GRPC_PORTS["registry"], ge=1, le=65535)
    metrics_port: int = Field(DEFAULT_METRICS_PORTS["registry"], ge=0, le=65535)
