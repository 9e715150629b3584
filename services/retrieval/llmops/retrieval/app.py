"""Retrieval service: indexes every documents.cleaned document into Qdrant (chunks with a MiniLM dense
vector and a BM25 sparse vector) and answers Retrieve (hybrid, dense or sparse), IndexStats and
ListCollections; every query is logged as retrieval.logged."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from llmops.contracts.events import DocumentCleaned, RetrievalLogged
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2_grpc
from llmops.core.embedding import MODEL_NAME, Embedder
from llmops.core.publish_buffer import PublishBuffer
from llmops.core.service import Deferred, Runtime
from llmops.retrieval.domain.chunking import ChunkingConfig, chunk_text
from llmops.retrieval.domain.tokens import ModelTokens
from llmops.retrieval.grpc_server import RetrievalServicer
from llmops.retrieval.index import ChunkIndex, IndexedDocument
from llmops.retrieval.settings import Settings

log = logging.getLogger(__name__)


class RetrievalService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chunking = ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap_tokens)
        self.index: Deferred[ChunkIndex] = Deferred("the chunk index")
        self._tokens: ModelTokens | None = None

    def register(self, runtime: Runtime) -> None:
        s = self.settings
        self.log = PublishBuffer(
            runtime.bus.publish,
            RetrievalLogged,
            s.platform.data_dir / "retrieval" / "retrieval_log.spool.jsonl",
            "retrieval",
            memory_limit=s.log_buffer_events,
        )
        runtime.grpc.add(
            retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server,
            RetrievalServicer(
                self.index,
                self.log,
                runtime.bus.stamp,
                MODEL_NAME,
                s.default_top_k,
                s.max_top_k,
                s.redactor(),
            ),
            "llmops.retrieval.v1.RetrievalService",
        )
        runtime.bus.consume_batches(
            DocumentCleaned,
            s.consumer_group("documents"),
            self._on_documents,
            max_records=s.index_batch_max_records,
        )
        runtime.bus.publishes(RetrievalLogged)

    async def start(self, runtime: Runtime) -> None:
        s = self.settings
        await runtime.enter(self.log)
        client = runtime.own(await asyncio.to_thread(s.qdrant.client, s.platform))
        embedder = await asyncio.to_thread(Embedder, None, s.embed_batch_size)
        self._tokens = await asyncio.to_thread(ModelTokens)
        self.index.set(ChunkIndex(client, embedder, embedder.dimension, s.build_reranker()))

    async def _on_documents(self, events: list[DocumentCleaned]) -> None:
        tokens = self._tokens
        assert tokens is not None
        index = self.index()

        def work() -> int:
            by_dataset: dict[str, list[IndexedDocument]] = defaultdict(list)
            for e in events:
                by_dataset[e.dataset].append(
                    IndexedDocument(
                        e.dataset,
                        e.document_id,
                        e.source,
                        e.snapshot_id,
                        chunk_text(e.text, self.chunking, tokens.count, tokens.offsets),
                        dict(e.metadata),
                    )
                )
            # Deterministic point ids: a redelivered batch replaces the same points.
            return sum(index.index(dataset, documents) for dataset, documents in by_dataset.items())

        chunks = await asyncio.to_thread(work)
        log.info("indexed %d document(s) as %d chunk(s)", len(events), chunks)
