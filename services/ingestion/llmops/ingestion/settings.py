"""Ingestion settings (prefix ``LLMOPS_INGESTION_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from llmops.core.settings import DatabaseSettings, ServiceSettings


class Settings(ServiceSettings, DatabaseSettings):
    service_name = "ingestion"

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders IngestFile may read from (the server's disk); default: <data_dir>/inbox.",
    )

    # Quality filters.
    min_chars: int = Field(20, ge=0)
    max_chars: int = Field(100_000, ge=1)
    min_words: int = Field(3, ge=0)
    max_symbol_ratio: float = Field(0.3, gt=0, le=1)
    max_repeated_line_ratio: float = Field(0.5, gt=0, le=1)
    max_top_word_ratio: float = Field(0.3, gt=0, le=1)
    # Near-duplicate removal (MinHash LSH over word shingles).
    near_dup_threshold: float = Field(0.8, gt=0, lt=1, description="Estimated Jaccard similarity.")
    near_dup_verify_margin: float = Field(
        1.0,
        ge=0,
        le=5,
        description="Standard errors of the MinHash estimate a candidate may fall below the threshold "
        "and still count as a near-duplicate (0: the estimate must reach the threshold).",
    )
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_size: int = Field(5, ge=1, le=20)
    # documents.raw: each consumed Kafka batch becomes one ingestion batch per dataset.
    raw_batch_max_records: int = Field(1000, ge=1)
    raw_batch_timeout_ms: int = Field(1000, ge=10)

    def roots(self) -> list[Path]:
        return [p.expanduser().resolve() for p in self.allowed_roots] or [self.platform.data_dir / "inbox"]
