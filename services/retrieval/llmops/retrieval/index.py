"""The chunk index in Qdrant: a dense MiniLM vector and a BM25 sparse vector per chunk.

The same code runs on qdrant-client's local mode (a folder, the one-machine default) and on a Qdrant
server or cluster by URL. One collection per dataset. A point's id is derived from (collection,
document, position), so indexing a document again replaces its chunks, a chunk the new version no
longer has is deleted, and a redelivered document changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import QdrantClient, models

from llmops.core.errors import InvalidArgument, NotFound
from llmops.retrieval.domain.chunking import Chunk
from llmops.retrieval.domain.sparse import document_vector, query_vector
from llmops.retrieval.rerank import FirstStageOrder, Reranker

DENSE = "dense"
SPARSE = "bm25"
_POINT_NAMESPACE = uuid.UUID("6f1d2c3b-4a5e-4f60-8b7c-9d0e1f2a3b4c")
# Payload fields a filter may name (exact match).
FILTERABLE = ("dataset", "document_id", "source", "snapshot_id", "heading")


class Mode(enum.StrEnum):
    """Dense and sparse search fused by reciprocal rank, or one of them alone."""

    HYBRID = "hybrid"
    DENSE = "dense"
    SPARSE = "sparse"


@dataclass(frozen=True)
class IndexedDocument:
    dataset: str
    document_id: str
    source: str
    snapshot_id: str
    chunks: Sequence[Chunk]
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionStats:
    points: int
    documents: int
    vector_size: int
    last_indexed_at: dt.datetime | None


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    text: str
    score: float
    payload: dict[str, Any]
    # The chunk's dense vector, fetched only for a reranker that needs it.
    vector: list[float] | None = None


def _dense_of(vector: Any) -> list[float] | None:
    """A point's dense vector when it was fetched (named vectors come as a dict)."""
    dense = vector.get(DENSE) if isinstance(vector, dict) else None
    return [float(x) for x in dense] if dense is not None else None


def point_id(collection: str, document_id: str, position: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{collection}\0{document_id}\0{position}"))


class ChunkIndex:
    """Collections of chunks with dense and sparse vectors; ``embed`` turns texts into unit vectors;
    ``reranker`` reorders what search finds (default: the first stage's order)."""

    def __init__(
        self, client: QdrantClient, embed: Any, dimension: int, reranker: Reranker | None = None
    ) -> None:
        self.client = client
        self._embed = embed
        self.dimension = dimension
        self.reranker: Reranker = reranker or FirstStageOrder()

    def ensure_collection(self, name: str) -> None:
        if self.client.collection_exists(name):
            return
        self.client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=self.dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        with warnings.catch_warnings():
            # Local mode says payload indexes do nothing there; a Qdrant server uses them for filters.
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for key in ("document_id", "dataset"):
                self.client.create_payload_index(name, key, models.PayloadSchemaType.KEYWORD)

    def index(self, collection: str, documents: Sequence[IndexedDocument]) -> int:
        """Upsert the documents' chunks (embedded together, in batches) and delete the chunks each one
        no longer has; how many chunks they have. A document given twice keeps its last version."""
        self.ensure_collection(collection)
        latest = {d.document_id: d for d in documents}
        now = dt.datetime.now(dt.UTC).isoformat()
        pairs = [(d, c) for d in latest.values() for c in d.chunks]
        dense = self._embed([c.text for _, c in pairs]) if pairs else []
        points = []
        for (document, chunk), vector in zip(pairs, dense, strict=True):
            sparse = document_vector(chunk.text)
            points.append(
                models.PointStruct(
                    id=point_id(collection, document.document_id, chunk.position),
                    vector={
                        DENSE: list(map(float, vector)),
                        SPARSE: models.SparseVector(indices=sparse.indices, values=sparse.values),
                    },
                    payload={
                        "dataset": document.dataset,
                        "document_id": document.document_id,
                        "source": document.source,
                        "snapshot_id": document.snapshot_id,
                        "position": chunk.position,
                        "heading": chunk.heading,
                        "start": chunk.start,
                        "end": chunk.end,
                        "text": chunk.text,
                        "metadata": dict(document.metadata),
                        "indexed_at": now,
                    },
                )
            )
        if points:
            self.client.upsert(collection, points, wait=True)
        for document in latest.values():
            # Chunks past the new end belonged to an earlier version of the document.
            self.client.delete(
                collection,
                models.FilterSelector(
                    filter=models.Filter(
                        must=[
                            models.FieldCondition(
                                key="document_id", match=models.MatchValue(value=document.document_id)
                            ),
                            models.FieldCondition(
                                key="position", range=models.Range(gte=len(document.chunks))
                            ),
                        ]
                    )
                ),
                wait=True,
            )
        return len(points)

    def count(self, collection: str, document_id: str | None = None) -> int:
        self._require(collection)
        flt = None
        if document_id is not None:
            flt = models.Filter(
                must=[models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]
            )
        return self.client.count(collection, count_filter=flt, exact=True).count

    def stats(self, collection: str) -> CollectionStats:
        """Counts of a collection (documents and the last indexing time read from the payloads)."""
        self._require(collection)
        documents: set[str] = set()
        last = ""
        points = 0
        offset = None
        while True:
            batch, offset = self.client.scroll(
                collection, limit=1000, offset=offset, with_payload=["document_id", "indexed_at"]
            )
            for point in batch:
                payload = point.payload or {}
                documents.add(str(payload.get("document_id", "")))
                last = max(last, str(payload.get("indexed_at", "")))
                points += 1
            if offset is None:
                break
        info = self.client.get_collection(collection)
        vectors = info.config.params.vectors
        size = vectors[DENSE].size if isinstance(vectors, dict) else self.dimension
        return CollectionStats(
            points, len(documents), size, dt.datetime.fromisoformat(last) if last else None
        )

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        *,
        filter: Mapping[str, str] | None = None,
        score_threshold: float = 0.0,
        mode: Mode = Mode.HYBRID,
    ) -> list[Hit]:
        """The ``top_k`` best chunks for ``query``: dense, sparse, or both fused by reciprocal rank, then
        reordered by the reranker (from the ``reranker.candidates(top_k)`` best)."""
        if not query.strip():
            raise InvalidArgument("query is empty")
        self._require(collection)
        unknown = sorted(set(filter or {}) - set(FILTERABLE))
        if unknown:
            raise InvalidArgument(
                f"filter names unknown field(s) {', '.join(unknown)}; filterable: {', '.join(FILTERABLE)}"
            )
        flt = None
        if filter:
            flt = models.Filter(
                must=[
                    models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in filter.items()
                ]
            )
        dense = list(map(float, self._embed([query])[0]))
        terms = query_vector(query)
        sparse = models.SparseVector(indices=terms.indices, values=terms.values)
        threshold = score_threshold or None
        limit = max(top_k, self.reranker.candidates(top_k))
        vectors = [DENSE] if self.reranker.needs_vectors else False
        if mode is not Mode.HYBRID:
            using, vector = (DENSE, dense) if mode is Mode.DENSE else (SPARSE, sparse)
            found = self.client.query_points(
                collection,
                query=vector,
                using=using,
                limit=limit,
                query_filter=flt,
                score_threshold=threshold,
                with_payload=True,
                with_vectors=vectors,
            )
        else:
            depth = max(limit * 4, 20)
            found = self.client.query_points(
                collection,
                prefetch=[
                    models.Prefetch(query=dense, using=DENSE, limit=depth, filter=flt),
                    models.Prefetch(query=sparse, using=SPARSE, limit=depth, filter=flt),
                ],
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                limit=limit,
                score_threshold=threshold,
                with_payload=True,
                with_vectors=vectors,
            )
        hits = [
            Hit(
                str(p.id),
                p.payload["document_id"],
                p.payload["text"],
                float(p.score),
                dict(p.payload),
                _dense_of(p.vector),
            )
            for p in found.points
            if p.payload is not None
        ]
        return self.reranker.rerank(query, hits, top_k)

    def _require(self, collection: str) -> None:
        if not self.client.collection_exists(collection):
            raise NotFound(
                f"collection {collection!r} does not exist; known: {', '.join(self.collections()) or 'none'}"
            )
