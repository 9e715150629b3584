"""Retrieval service settings (prefix ``LLMOPS_RETRIEVAL_``)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from llmops.core.settings import QdrantSettings, ServiceSettings
from llmops.retrieval.rerank import RERANKERS, Reranker, build_reranker


class Settings(ServiceSettings):
    service_name = "retrieval"

    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    # Chunks are at most this many tokens of the embedding model, consecutive ones sharing up to
    # chunk_overlap_tokens (MiniLM reads 256 at most, its special tokens included).
    chunk_tokens: int = Field(200, ge=8, le=254)
    chunk_overlap_tokens: int = Field(40, ge=0)
    embed_batch_size: int = Field(64, ge=1)
    # documents.cleaned is indexed in batches of up to this many documents.
    index_batch_max_records: int = Field(64, ge=1)
    default_top_k: int = Field(5, ge=1)
    max_top_k: int = Field(100, ge=1)
    log_buffer_events: int = Field(10_000, ge=1)
    # A second stage after search (see llmops.retrieval.rerank): "none" keeps the first stage's order;
    # "mmr" picks diverse chunks from rerank_candidates * top_k candidates, trading mmr_diversity of
    # relevance for distance from the chunks already picked. The default stays "none": in
    # tests/bench/retrieval.py, mmr spreads the top 10 over more documents but lowers nDCG@10.
    reranker: str = "none"
    rerank_candidates: int = Field(4, ge=1, le=20)
    mmr_diversity: float = Field(0.3, ge=0.0, le=1.0)

    @field_validator("reranker")
    @classmethod
    def _known_reranker(cls, value: str) -> str:
        if value not in RERANKERS:
            raise ValueError(
                f"LLMOPS_RETRIEVAL_RERANKER {value!r} is not a reranker; choose one of {', '.join(RERANKERS)}"
            )
        return value

    def build_reranker(self) -> Reranker:
        return build_reranker(
            self.reranker, diversity=self.mmr_diversity, candidates_factor=self.rerank_candidates
        )

    @model_validator(mode="after")
    def _overlap_below_half(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens // 2:
            raise ValueError(
                f"LLMOPS_RETRIEVAL_CHUNK_OVERLAP_TOKENS ({self.chunk_overlap_tokens}) must be less than half "
                f"of LLMOPS_RETRIEVAL_CHUNK_TOKENS ({self.chunk_tokens})"
            )
        if self.default_top_k > self.max_top_k:
            raise ValueError(
                f"LLMOPS_RETRIEVAL_DEFAULT_TOP_K ({self.default_top_k}) is above "
                f"LLMOPS_RETRIEVAL_MAX_TOP_K ({self.max_top_k})"
            )
        return self
