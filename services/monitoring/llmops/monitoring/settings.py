"""Monitoring settings (prefix ``LLMOPS_MONITORING_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.settings import ClickHouseSettings, ServiceSettings


class Settings(ServiceSettings):
    service_name = "monitoring"

    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)

    default_max_rows: int = Field(1000, ge=1)
    max_rows_limit: int = Field(100_000, ge=1)
    # Rows are written to ClickHouse in batches: up to this many, or whatever arrived in this time.
    batch_max_records: int = Field(5000, ge=1)
    batch_timeout_ms: int = Field(500, ge=10)
