"""Monitoring settings (prefix ``LLMOPS_MONITORING_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import (
    DEFAULT_GRPC_PORTS,
    DEFAULT_METRICS_PORTS,
    ClickHouseSettings,
    ServiceSettings,
    service_config,
)


class Settings(ServiceSettings):
    model_config = service_config("monitoring")
    service_name = "monitoring"

    grpc_port: int = Field(DEFAULT_GRPC_PORTS["monitoring"], ge=1, le=65535)
    metrics_port: int = Field(DEFAULT_METRICS_PORTS["monitoring"], ge=0, le=65535)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)

    default_max_rows: int = Field(1000, ge=1)
    max_rows_limit: int = Field(100_000, ge=1)
    # Rows are written to ClickHouse in batches: up to this many, or whatever arrived in this time.
    batch_max_records: int = Field(500, ge=1)
    batch_timeout_ms: int = Field(500, ge=10)
