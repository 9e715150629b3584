"""Monitoring settings (prefix ``LLMOPS_MONITORING_``)."""

from __future__ import annotations

from pydantic import Field

from llmops.core.clickhouse import QueryLimits
from llmops.core.settings import ClickHouseSettings, ServiceSettings
from llmops.monitoring.alerts import AlertSettings
from llmops.monitoring.drift_job import DriftJobSettings
from llmops.monitoring.loop.policy import LoopSettings


class Settings(ServiceSettings):
    service_name = "monitoring"

    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    # The scheduled drift job and DriftReport's sample sizes (prefix LLMOPS_MONITORING_DRIFT_).
    drift: DriftJobSettings = Field(default_factory=DriftJobSettings)
    # The feedback loop's controller and each model's policy (prefix LLMOPS_MONITORING_LOOP_).
    loop: LoopSettings = Field(default_factory=LoopSettings)
    # The alert rules and how often they run (prefix LLMOPS_MONITORING_ALERT_).
    alert: AlertSettings = Field(default_factory=AlertSettings)

    default_max_rows: int = Field(1000, ge=1)
    max_rows_limit: int = Field(100_000, ge=1)
    # What one Query may cost; the engine stops it at the first limit it passes (0: no limit).
    query_max_seconds: float = Field(30.0, gt=0)
    query_max_rows_to_read: int = Field(1_000_000_000, ge=0)
    query_max_bytes_to_read: int = Field(50 * 2**30, ge=0)
    query_max_result_bytes: int = Field(64 * 2**20, ge=0)
    # Queries that run at the same time (each in a reader thread of its own); more wait their turn.
    query_concurrency: int = Field(4, ge=1, le=64)
    # Rows are written to ClickHouse in batches: up to this many, or whatever arrived in this time.
    batch_max_records: int = Field(5000, ge=1)
    batch_timeout_ms: int = Field(500, ge=10)

    def query_limits(self) -> QueryLimits:
        prefix = "LLMOPS_MONITORING_QUERY_"
        return QueryLimits(
            max_seconds=self.query_max_seconds,
            max_rows_to_read=self.query_max_rows_to_read,
            max_bytes_to_read=self.query_max_bytes_to_read,
            max_result_bytes=self.query_max_result_bytes,
            setting_names={
                "max_seconds": f"{prefix}MAX_SECONDS",
                "max_rows_to_read": f"{prefix}MAX_ROWS_TO_READ",
                "max_bytes_to_read": f"{prefix}MAX_BYTES_TO_READ",
                "max_result_bytes": f"{prefix}MAX_RESULT_BYTES",
            },
        )
