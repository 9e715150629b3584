"""Serving settings (prefix ``LLMOPS_SERVING_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from llmops.core.model_assets import SMOLLM2_NAME
from llmops.core.settings import DEFAULT_SERVING_HTTP_PORT, ServiceSettings


class Settings(ServiceSettings):
    service_name = "serving"

    model_path: Path | None = Field(
        None,
        description="A Hugging Face model folder; default: the packaged SmolLM2 prepared by `make setup`.",
    )
    served_model_name: str = SMOLLM2_NAME
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="float32 on CPU (bf16 takes slow paths there); bfloat16 or auto on GPUs."
    )
    max_model_len: int = Field(2048, ge=128)
    default_max_tokens: int = Field(256, ge=1)
    max_tokens_limit: int = Field(1024, ge=1)
    kv_cache_gib: int = Field(1, ge=1, description="KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE).")
    enable_lora: bool = True
    max_loras: int = Field(4, ge=1)
    max_lora_rank: int = Field(16, ge=1)
    # Answers' logs wait here while the broker is away: this many in memory, then a spool file of at
    # most this size under the data folder; past both, a log is dropped and counted.
    log_buffer_events: int = Field(10_000, ge=1)
    log_spool_max_mb: int = Field(256, ge=0)
    # Backpressure: requests past this many in flight (gRPC and HTTP together) are refused at once
    # (RESOURCE_EXHAUSTED; HTTP 429 with Retry-After) instead of queueing without bound.
    max_requests_in_flight: int = Field(64, ge=1)
    retry_after_seconds: float = Field(1.0, gt=0)
    # Adapters no alias names any more are unloaded beyond this many idle ones (least recently used first).
    max_idle_adapters: int = Field(2, ge=0)
    # Template aliases and "latest" are asked of the registry again after this long; versions are kept.
    template_cache_seconds: float = Field(5.0, ge=0)
    # The longest a request waits for retrieval (less when its own deadline is nearer).
    retrieval_timeout_seconds: float = Field(5.0, gt=0)
    # The OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models); 0 turns it off.
    http_port: int = Field(DEFAULT_SERVING_HTTP_PORT, ge=0, le=65535)

    @model_validator(mode="after")
    def _limits(self) -> Settings:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                "LLMOPS_SERVING_DEFAULT_MAX_TOKENS is larger than LLMOPS_SERVING_MAX_TOKENS_LIMIT"
            )
        if self.max_tokens_limit >= self.max_model_len:
            raise ValueError(
                "LLMOPS_SERVING_MAX_TOKENS_LIMIT must be smaller than LLMOPS_SERVING_MAX_MODEL_LEN"
            )
        return self
