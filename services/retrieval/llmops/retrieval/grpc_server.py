"""RetrievalService over gRPC."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import grpc

from llmops.contracts.events import RetrievalLogged
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2 as pb
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2_grpc
from llmops.core.convert import EnumMap
from llmops.core.errors import InvalidArgument
from llmops.core.publish_buffer import PublishBuffer
from llmops.core.service import Deferred
from llmops.retrieval.index import ChunkIndex, Hit, Mode

MODES = EnumMap(pb.RetrievalMode, Mode)


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(
        self,
        index: Deferred[ChunkIndex],
        log: PublishBuffer,
        stamp: Callable[[RetrievalLogged], RetrievalLogged],
        model: str,
        default_top_k: int,
        max_top_k: int,
        redact: Callable[[str], str],
    ) -> None:
        self._redact = redact
        self._index = index
        self._log = log
        self._stamp = stamp
        self._model = model
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k

    async def Retrieve(
        self, request: pb.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetrieveResponse:
        started = time.perf_counter()
        if not request.collection:
            raise InvalidArgument("collection is empty: name the collection (a dataset) to search")
        top_k = request.top_k or self._default_top_k
        if not 1 <= top_k <= self._max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self._max_top_k}, got {request.top_k}")
        mode = MODES.from_pb(request.mode, "mode") or Mode.HYBRID
        hits = await asyncio.to_thread(
            self._index().search,
            request.collection,
            request.query,
            top_k,
            filter=dict(request.filter),
            score_threshold=request.score_threshold,
            mode=mode,
        )
        latency_ms = (time.perf_counter() - started) * 1000
        request_id = request.request_id or str(uuid.uuid4())
        self._log.put(
            self._stamp(
                RetrievalLogged(
                    request_id=request_id,
                    collection=request.collection,
                    query=self._redact(request.query),  # the log leaves this process
                    top_k=top_k,
                    document_ids=[h.document_id for h in hits],
                    chunk_ids=[h.chunk_id for h in hits],
                    scores=[h.score for h in hits],
                    latency_ms=latency_ms,
                    mode=mode.value,
                )
            )
        )
        return pb.RetrieveResponse(
            chunks=[_chunk(h) for h in hits],
            embedding_model=self._model,
            latency_ms=latency_ms,
            request_id=request_id,
        )

    async def IndexStats(
        self, request: pb.IndexStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.IndexStatsResponse:
        if not request.collection:
            raise InvalidArgument("collection is empty")
        return await asyncio.to_thread(self._stats, request.collection)

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        names = await asyncio.to_thread(self._index().collections)
        stats = [await asyncio.to_thread(self._stats, name) for name in names]
        return pb.ListCollectionsResponse(collections=stats)

    def _stats(self, collection: str) -> pb.IndexStatsResponse:
        stats = self._index().stats(collection)
        reply = pb.IndexStatsResponse(
            collection=collection,
            points_count=stats.points,
            vector_size=stats.vector_size,
            embedding_model=self._model,
            distance="cosine",
            documents_count=stats.documents,
        )
        if stats.last_indexed_at is not None:
            reply.last_indexed_at.FromDatetime(stats.last_indexed_at)
        return reply


def _chunk(hit: Hit) -> pb.ScoredChunk:
    p = hit.payload
    metadata = {
        "dataset": str(p.get("dataset", "")),
        "source": str(p.get("source", "")),
        "snapshot_id": str(p.get("snapshot_id", "")),
        "position": str(p.get("position", "")),
        "heading": str(p.get("heading", "")),
        **{str(k): str(v) for k, v in (p.get("metadata") or {}).items()},
    }
    return pb.ScoredChunk(
        document_id=hit.document_id, chunk_id=hit.chunk_id, text=hit.text, score=hit.score, metadata=metadata
    )
