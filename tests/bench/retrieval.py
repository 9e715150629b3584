"""Retrieval: nDCG@10 of each search mode (and the mmr reranker) on labelled queries, the indexing rate
against a bare qdrant-client upsert, and Retrieve's latency and dense recall at 50,000 chunks.

Corpus: the long descriptions in the METADATA of every package installed in this virtual environment
(real text that ships with the machine), chunked with the service's own settings. Labels nobody wrote
by hand: a package's one-line Summary is the query and every chunk of that package's description is
relevant (the Summary is cut out of the description where it appears verbatim, so a query is not a
copy of its answer); a Summary under three words or shared by two packages is left out.

MiniLM on two shared cores embeds a few dozen chunks a second, so the corpus is embedded once and the
vectors cached under ``<data_dir>/bench/retrieval`` (keyed by the model, the chunking and the texts);
its throughput is measured on a sample in every run. The 50,000-chunk collection is the real chunks
plus perturbed copies of them (dense vector plus Gaussian noise to a cosine of about 0.9 with the
original, a tenth of the BM25 terms dropped), upserted bare. Everything runs in this process on
qdrant-client's local mode: in memory, except the indexing rows marked "on disk" (the service's
default, where each point is one SQLite commit, too slow for the whole corpus here). Local mode has no
HNSW: dense search is exact there, so its recall is 1.0 by construction; it is still checked against
a NumPy top-10.

``LLMOPS_BENCH_RETRIEVAL_CHUNKS`` (default 50,000) and ``LLMOPS_BENCH_RETRIEVAL_QUERIES`` (latency
queries per configuration, default 25) change the scale.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import sysconfig
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models

from llmops.contracts.events import DocumentCleaned, RetrievalLogged
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2 as pb
from llmops.core.embedding import MODEL_NAME, Embedder
from llmops.core.outbox import stamp
from llmops.core.publish_buffer import PublishBuffer
from llmops.core.service import Deferred
from llmops.retrieval.app import RetrievalService
from llmops.retrieval.domain.chunking import Chunk, chunk_text
from llmops.retrieval.domain.sparse import document_vector
from llmops.retrieval.domain.tokens import ModelTokens
from llmops.retrieval.grpc_server import MODES, RetrievalServicer
from llmops.retrieval.index import DENSE, SPARSE, ChunkIndex, Mode, point_id
from llmops.retrieval.rerank import Reranker
from llmops.retrieval.settings import Settings

CHUNKS = int(os.environ.get("LLMOPS_BENCH_RETRIEVAL_CHUNKS", "50000"))
QUERIES = int(os.environ.get("LLMOPS_BENCH_RETRIEVAL_QUERIES", "25"))
TOP_K = 10
SEED = 20261201
DATASET = "packages"
COPY_COSINE = 0.9
SAMPLE_CHUNKS = 256
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Package:
    name: str
    summary: str
    text: str


@dataclass(frozen=True)
class Corpus:
    packages: list[Package]
    queries: list[tuple[str, str]]  # (summary, package name)
    chunks: list[tuple[str, Chunk]]  # (package name, chunk), in the handler's order
    dropped: dict[str, int]
    chunking_seconds: float


def _packages() -> list[Package]:
    site = Path(sysconfig.get_paths()["purelib"])
    found: dict[str, Package] = {}
    for path in sorted(site.glob("*.dist-info/METADATA")):
        message = Parser().parsestr(path.read_text(encoding="utf-8", errors="replace"))
        name = re.sub(r"[-_.]+", "-", str(message.get("Name", ""))).lower()
        summary = " ".join(str(message.get("Summary") or "").split())
        body = message.get_payload() if not message.is_multipart() else ""
        text = str(body or message.get("Description") or "")
        if summary and len(summary) > 10:
            text = text.replace(summary, "")
        if name and len(text.strip()) >= 200:
            found[name] = Package(name, summary, text)
    return list(found.values())


def _corpus(settings: Settings, tokens: ModelTokens) -> Corpus:
    packages = _packages()
    chunking = RetrievalService(settings).chunking
    started = time.perf_counter()
    chunks = [
        (p.name, c) for p in packages for c in chunk_text(p.text, chunking, tokens.count, tokens.offsets)
    ]
    chunking_seconds = time.perf_counter() - started
    by_summary: dict[str, list[Package]] = {}
    for p in packages:
        by_summary.setdefault(p.summary.casefold(), []).append(p)
    short = [p for p in packages if len(p.summary.split()) < 3]
    shared = [p for group in by_summary.values() if len(group) > 1 for p in group]
    queries = [(p.summary, p.name) for p in packages if p not in short and p not in shared]
    return Corpus(
        packages,
        queries,
        chunks,
        {"summary under 3 words": len(short), "shared": len(shared)},
        chunking_seconds,
    )


class CachedVectors:
    """MiniLM vectors of texts seen before (the corpus, from the cache), the model for the rest."""

    def __init__(self, embedder: Embedder, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._embedder = embedder
        self._by_text = {t: v for t, v in zip(texts, vectors.tolist(), strict=True)}

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._by_text]
        if missing:
            self._by_text.update(zip(missing, self._embedder(missing), strict=True))
        return [self._by_text[t] for t in texts]


def _vectors(embedder: Embedder, texts: list[str], settings: Settings) -> tuple[np.ndarray, str]:
    key = hashlib.sha256(
        "\0".join(
            [MODEL_NAME, str(settings.chunk_tokens), str(settings.chunk_overlap_tokens), *texts]
        ).encode()
    ).hexdigest()[:16]
    folder = settings.platform.data_dir / "bench" / "retrieval"
    cache = folder / f"minilm-{key}.npy"
    if cache.exists():
        return np.load(cache), f"reused from {cache}"
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[np.ndarray] = []
    started = time.perf_counter()
    for start in range(0, len(texts), 512):
        parts.append(np.array(embedder(texts[start : start + 512]), dtype=np.float32))
        done = start + len(parts[-1])
        rate = done / (time.perf_counter() - started)
        print(f"  embedding the corpus once: {done}/{len(texts)} chunks ({rate:.0f}/s)", flush=True)
    vectors = np.concatenate(parts)
    np.save(cache, vectors)
    return (
        vectors,
        f"embedded in this run at {len(texts) / (time.perf_counter() - started):.0f} chunks/s, "
        f"cached in {cache}",
    )


@contextmanager
def _local(folder: Path | None) -> Iterator[QdrantClient]:
    """Local mode in ``folder``, or in memory (None)."""
    with warnings.catch_warnings():
        # Local mode warns past 20,000 points; the output says what local mode is.
        warnings.filterwarnings("ignore", "Local mode is not recommended", UserWarning)
        client = QdrantClient(path=str(folder)) if folder else QdrantClient(":memory:")
        try:
            yield client
        finally:
            client.close()


def _events(packages: Sequence[Package], prefix: str = "") -> list[DocumentCleaned]:
    return [
        DocumentCleaned(
            document_id=prefix + p.name,
            dataset=DATASET,
            batch_id="bench",
            snapshot_id="bench",
            text=p.text,
            content_hash=hashlib.sha256(p.text.encode()).hexdigest(),
            source=f"site-packages/{p.name}",
        )
        for p in packages
    ]


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _handler(settings: Settings, tokens: ModelTokens, index: ChunkIndex) -> RetrievalService:
    """The service's documents.cleaned batch handler, wired to ``index`` as ``start`` wires it."""
    service = RetrievalService(settings)
    service.index.set(index)
    service._tokens = tokens
    return service


def _index_through_handler(
    service: RetrievalService, events: list[DocumentCleaned], batch: int, collection: str
) -> tuple[int, float]:
    index = service.index()
    before = index.count(collection) if collection in index.collections() else 0

    async def run() -> float:
        started = time.perf_counter()
        for part in _batches(events, batch):
            await service._on_documents(list(part))
        return time.perf_counter() - started

    seconds = asyncio.run(run())
    return index.count(collection) - before, seconds


def _bare_points(
    corpus: Corpus, vectors: np.ndarray, names: set[str], prefix: str
) -> list[list[models.PointStruct]]:
    """The points the handler makes for ``names`` (same ids, vectors and payload), built up front,
    grouped per package."""
    grouped: dict[str, list[models.PointStruct]] = {}
    now = dt.datetime.now(dt.UTC).isoformat()
    for (name, chunk), vector in zip(corpus.chunks, vectors, strict=True):
        if name not in names:
            continue
        sparse = document_vector(chunk.text)
        grouped.setdefault(name, []).append(
            models.PointStruct(
                id=point_id(DATASET, prefix + name, chunk.position),
                vector={
                    DENSE: vector.tolist(),
                    SPARSE: models.SparseVector(indices=sparse.indices, values=sparse.values),
                },
                payload=_payload(prefix + name, chunk, now),
            )
        )
    return list(grouped.values())


def _payload(document_id: str, chunk: Chunk, now: str) -> dict[str, object]:
    """What ChunkIndex.index writes with a chunk of an event from ``_events``."""
    return {
        "dataset": DATASET,
        "document_id": document_id,
        "source": f"site-packages/{document_id.rsplit('/', 1)[-1]}",
        "snapshot_id": "bench",
        "position": chunk.position,
        "heading": chunk.heading,
        "start": chunk.start,
        "end": chunk.end,
        "text": chunk.text,
        "metadata": {},
        "indexed_at": now,
    }


def _bare_upsert(
    client: QdrantClient, collection: str, groups: list[list[models.PointStruct]], batch: int
) -> float:
    started = time.perf_counter()
    for part in _batches(groups, batch):
        client.upsert(collection, [p for group in part for p in group], wait=True)
    return time.perf_counter() - started


# --- quality ---------------------------------------------------------------------------------------


def _judge(hits: Sequence[str], relevant: str, relevant_chunks: int) -> dict[str, float]:
    gains = [1.0 if document == relevant else 0.0 for document in hits[:TOP_K]]
    dcg = sum(g / np.log2(rank + 2) for rank, g in enumerate(gains))
    ideal = sum(1 / np.log2(rank + 2) for rank in range(min(TOP_K, relevant_chunks)))
    first = next((rank for rank, g in enumerate(gains) if g), None)
    return {
        "ndcg": dcg / ideal,
        "found": float(first is not None),
        "mrr": 1 / (first + 1) if first is not None else 0.0,
        "precision": sum(gains) / TOP_K,
        "distinct": float(len(set(hits[:TOP_K]))),
    }


def _quality(indexes: dict[str, tuple[ChunkIndex, Mode]], corpus: Corpus) -> dict[str, dict[str, np.ndarray]]:
    per_package: dict[str, int] = {}
    for name, _ in corpus.chunks:
        per_package[name] = per_package.get(name, 0) + 1
    scores: dict[str, dict[str, list[float]]] = {label: {} for label in indexes}
    for query, relevant in corpus.queries:
        for label, (index, mode) in indexes.items():
            hits = index.search(DATASET, query, TOP_K, mode=mode)
            for metric, value in _judge(
                [h.document_id for h in hits], relevant, per_package[relevant]
            ).items():
                scores[label].setdefault(metric, []).append(value)
    return {label: {m: np.array(v) for m, v in metrics.items()} for label, metrics in scores.items()}


def _interval(difference: np.ndarray) -> tuple[float, float]:
    """A 95% paired bootstrap interval of the mean of per-query differences."""
    rng = np.random.default_rng(SEED)
    means = difference[rng.integers(0, len(difference), (BOOTSTRAP, len(difference)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


# --- scale -----------------------------------------------------------------------------------------


def _scaled_points(
    corpus: Corpus, vectors: np.ndarray, total: int, rng: np.random.Generator
) -> tuple[list[models.PointStruct], np.ndarray, list[str]]:
    """The real chunks, then perturbed copies of them until ``total``; also the dense matrix and ids."""
    # Unit vector plus N(0, s^2) noise in 384 dimensions has cosine about 1/sqrt(1 + 384 s^2) with it.
    sigma = np.sqrt((1 / COPY_COSINE**2 - 1) / vectors.shape[1])
    sparse = [document_vector(chunk.text) for _, chunk in corpus.chunks]
    now = dt.datetime.now(dt.UTC).isoformat()
    points, dense, ids = [], np.empty((total, vectors.shape[1]), dtype=np.float32), []
    for i in range(total):
        copy, source = divmod(i, len(corpus.chunks))
        name, chunk = corpus.chunks[source]
        vector = vectors[source]
        indices, values = sparse[source].indices, sparse[source].values
        if copy:
            vector = vector + rng.normal(0, sigma, vector.shape).astype(np.float32)
            vector /= np.linalg.norm(vector)
            keep = rng.random(len(indices)) >= 0.1
            keep[: min(1, len(keep))] = True  # a chunk keeps at least one term
            indices = [x for x, k in zip(indices, keep, strict=True) if k]
            values = [x for x, k in zip(values, keep, strict=True) if k]
        pid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"bench-scale\0{i}"))
        dense[i] = vector
        ids.append(pid)
        points.append(
            models.PointStruct(
                id=pid,
                vector={DENSE: vector.tolist(), SPARSE: models.SparseVector(indices=indices, values=values)},
                payload=_payload(f"{name}#{copy}", chunk, now),
            )
        )
    return points, dense, ids


def _servicer(index: ChunkIndex, spool: Path) -> RetrievalServicer:
    async def nowhere(event: object) -> None:
        return None

    log = PublishBuffer(nowhere, RetrievalLogged, spool, "retrieval", memory_limit=1_000_000)
    deferred: Deferred[ChunkIndex] = Deferred("the chunk index")
    deferred.set(index)
    return RetrievalServicer(deferred, log, lambda e: stamp(e, "retrieval"), MODEL_NAME, TOP_K, 100)


def _latencies(
    servicers: dict[str, tuple[RetrievalServicer, Mode]], collection: str, queries: list[str]
) -> dict[str, np.ndarray]:
    """Milliseconds per Retrieve, configurations interleaved query by query (load hits all alike)."""

    async def run() -> dict[str, list[float]]:
        taken: dict[str, list[float]] = {label: [] for label in servicers}
        for n, query in enumerate(queries):
            for label, (servicer, mode) in servicers.items():
                request = pb.RetrieveRequest(
                    collection=collection, query=query, top_k=TOP_K, mode=MODES.to_pb(mode)
                )
                started = time.perf_counter()
                await servicer.Retrieve(request, None)
                if n >= 2:  # the first two are warm-up
                    taken[label].append((time.perf_counter() - started) * 1000)
        return taken

    return {label: np.array(v) for label, v in asyncio.run(run()).items()}


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  "
            + "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


@dataclass
class Bench:
    """What the sections share: settings, the corpus, its vectors, the model and the folder."""

    settings: Settings
    mmr_settings: Settings
    tokens: ModelTokens
    corpus: Corpus
    vectors: np.ndarray
    embedder: Embedder
    root: Path
    rng: np.random.Generator

    @property
    def texts(self) -> list[str]:
        return [c.text for _, c in self.corpus.chunks]

    @property
    def batch(self) -> int:
        return self.settings.index_batch_max_records

    def sample(self) -> list[Package]:
        """Packages picked at random until they hold SAMPLE_CHUNKS chunks."""
        picked: list[Package] = []
        size = 0
        rng = np.random.default_rng(SEED)
        for position in rng.permutation(len(self.corpus.packages)):
            picked.append(self.corpus.packages[int(position)])
            size += sum(1 for name, _ in self.corpus.chunks if name == picked[-1].name)
            if size >= SAMPLE_CHUNKS:
                break
        return picked

    def cached(self) -> CachedVectors:
        return CachedVectors(self.embedder, self.texts, self.vectors)

    def index(
        self, client: QdrantClient, embed: object = None, reranker: Reranker | None = None
    ) -> ChunkIndex:
        return ChunkIndex(client, embed or self.embedder, self.embedder.dimension, reranker)


def _indexing(bench: Bench, client: QdrantClient) -> ChunkIndex:
    """The corpus through the handler (into ``client``, in memory) and bare, then a sample on disk
    both ways and through the handler with the model; the index on ``client``."""
    corpus, batch, texts = bench.corpus, bench.batch, bench.texts
    served = bench.index(client, bench.cached())
    served.ensure_collection(DATASET)
    with _local(None) as bare_client:
        bench.index(bare_client).ensure_collection(DATASET)
        groups = _bare_points(corpus, bench.vectors, {p.name for p in corpus.packages}, "")
        bare_rate = len(texts) / _bare_upsert(bare_client, DATASET, groups, batch)
    handler = _handler(bench.settings, bench.tokens, served)
    indexed, seconds = _index_through_handler(handler, _events(corpus.packages), batch, DATASET)
    assert indexed == len(texts), (indexed, len(texts))
    rows = [
        ["in memory: bare qdrant-client upsert", str(len(texts)), f"{bare_rate:.0f}", "1.00x"],
        _rate_row("in memory: handler, MiniLM vectors precomputed", indexed, seconds, bare_rate),
    ]

    sample = bench.sample()
    names = {p.name for p in sample}
    # Disk speed varies with what else writes to it: the two paths alternate, twice, fresh folders.
    disk_chunks, bare_seconds, disk_indexed, disk_seconds = 0, 0.0, 0, 0.0
    for round_ in range(2):
        with _local(bench.root / f"bare-{round_}") as bare_client:
            bench.index(bare_client).ensure_collection(DATASET)
            groups = _bare_points(corpus, bench.vectors, names, "")
            disk_chunks += sum(len(g) for g in groups)
            bare_seconds += _bare_upsert(bare_client, DATASET, groups, batch)
        with _local(bench.root / f"handler-{round_}") as disk_client:
            handler = _handler(bench.settings, bench.tokens, bench.index(disk_client, bench.cached()))
            chunks, taken = _index_through_handler(handler, _events(sample), batch, DATASET)
            disk_indexed, disk_seconds = disk_indexed + chunks, disk_seconds + taken
    disk_rate = disk_chunks / bare_seconds
    with _local(bench.root / "live") as disk_client:
        # End to end: the handler embedding with MiniLM, as the service runs by default.
        handler = _handler(bench.settings, bench.tokens, bench.index(disk_client))
        live_chunks, live_seconds = _index_through_handler(handler, _events(sample), batch, DATASET)
    rows += [
        ["on disk: bare qdrant-client upsert", str(disk_chunks), f"{disk_rate:.0f}", "1.00x"],
        _rate_row("on disk: handler, MiniLM vectors precomputed", disk_indexed, disk_seconds, disk_rate),
        _rate_row("on disk: handler with MiniLM (end to end)", live_chunks, live_seconds, disk_rate),
    ]
    print(
        "\nIndexing, in process (no Kafka): the service's documents.cleaned batch handler "
        "(RetrievalService._on_documents: chunk, embed, BM25, upsert, delete each document's stale "
        f"chunks), {batch} documents a batch, against a bare upsert of the same points (ids, vectors, "
        "payload) built beforehand; rate: chunks searchable per second. Local mode on disk (the "
        "service's default) commits one SQLite transaction per point, so the disk rows use a sample "
        f"of {len(sample)} packages"
    )
    _table(["path", "chunks", "chunks/s", "vs bare"], rows)
    return served


def _rate_row(label: str, chunks: int, seconds: float, baseline: float) -> list[str]:
    rate = chunks / seconds
    return [
        label,
        str(chunks),
        f"{rate:.0f}",
        f"{rate / baseline:.3f}x" if rate < baseline / 10 else f"{rate / baseline:.2f}x",
    ]


def _quality_report(bench: Bench, client: QdrantClient, served: ChunkIndex) -> None:
    corpus = bench.corpus
    default = "hybrid (default)"
    mmr = bench.index(client, bench.cached(), bench.mmr_settings.build_reranker())
    configurations = {
        default: (served, Mode.HYBRID),
        "dense": (served, Mode.DENSE),
        "sparse": (served, Mode.SPARSE),
        f"hybrid + mmr (diversity {bench.mmr_settings.mmr_diversity:g})": (mmr, Mode.HYBRID),
    }
    started = time.perf_counter()
    quality = _quality(configurations, corpus)
    print(
        f"\nQuality: {len(corpus.queries)} queries on {len(bench.texts)} chunks, top {TOP_K}; a chunk is "
        "relevant when it is from the query's package (nDCG@10 binary, ideal: min(10, its chunks)); "
        "found@10: the package is among the 10 (document recall@10); P@10: share of the 10 from it; "
        "CI: 95% paired bootstrap of the nDCG@10 difference from hybrid "
        f"({time.perf_counter() - started:.0f}s)"
    )
    base = quality[default]["ndcg"]
    rows = []
    for label, metrics in quality.items():
        ndcg = metrics["ndcg"]
        interval = ""
        if label != default:
            low, high = _interval(ndcg - base)
            interval = f"[{low:+.3f}, {high:+.3f}]"
        rows.append(
            [
                label,
                f"{ndcg.mean():.3f}",
                f"{ndcg.mean() / base.mean():.2f}x",
                interval,
                f"{metrics['found'].mean():.3f}",
                f"{metrics['mrr'].mean():.3f}",
                f"{metrics['precision'].mean():.3f}",
                f"{metrics['distinct'].mean():.1f}",
            ]
        )
    _table(
        ["search", "nDCG@10", "vs hybrid", "CI of diff", "found@10", "MRR@10", "P@10", "packages@10"], rows
    )


def _scale(bench: Bench, client: QdrantClient) -> None:
    """Latency and dense recall at CHUNKS chunks, then one more batch through the handler."""
    texts = bench.texts
    points, dense, ids = _scaled_points(bench.corpus, bench.vectors, CHUNKS, bench.rng)
    served = bench.index(client)
    served.ensure_collection(DATASET)
    started = time.perf_counter()
    for part in _batches(points, 1000):
        client.upsert(DATASET, list(part), wait=True)
    upsert_rate = CHUNKS / (time.perf_counter() - started)
    del points
    print(
        f"\nScale: {CHUNKS} chunks = {min(CHUNKS, len(texts))} real + {max(CHUNKS - len(texts), 0)} "
        f"perturbed copies (dense: noise to a cosine of ~{COPY_COSINE} with the original; BM25: a tenth "
        f"of the terms dropped), upserted bare into local mode in memory at {upsert_rate:.0f} chunks/s "
        "(search works alike in memory and on disk: both scan every point, no HNSW; on disk each point "
        "is one SQLite commit)."
    )
    queries = [q for q, _ in bench.corpus.queries]
    timed = [queries[i] for i in bench.rng.permutation(len(queries))[: QUERIES + 2]]
    spool = bench.root / "retrieval_log.spool.jsonl"
    mmr = bench.index(client, reranker=bench.mmr_settings.build_reranker())
    servicers = {
        "dense": (_servicer(served, spool), Mode.DENSE),
        "sparse": (_servicer(served, spool), Mode.SPARSE),
        "hybrid": (_servicer(served, spool), Mode.HYBRID),
        "hybrid + mmr": (_servicer(mmr, spool), Mode.HYBRID),
    }
    latency = _latencies(servicers, DATASET, timed)

    # Dense recall: query_points against a NumPy exact top-10, for every labelled query.
    recall, bare_ms = [], []
    for vector in np.array(bench.embedder(queries), dtype=np.float32):
        started = time.perf_counter()
        found = client.query_points(DATASET, query=vector.tolist(), using=DENSE, limit=TOP_K)
        bare_ms.append((time.perf_counter() - started) * 1000)
        exact = np.argpartition(-(dense @ vector), TOP_K)[:TOP_K]
        recall.append(len({str(p.id) for p in found.points} & {ids[i] for i in exact}) / TOP_K)
    latency["bare query_points, dense (vector given)"] = np.array(bare_ms)
    print(
        f"\nRetrieve latency at {CHUNKS} chunks: RetrievalServicer.Retrieve in process (no network), "
        f"query embedding and retrieval.logged included, top_k={TOP_K}, {len(timed) - 2} queries a row "
        "(after 2 warm-up), rows interleaved query by query; the bare row: every labelled query"
    )
    dense_p50 = float(np.percentile(latency["dense"], 50))
    rows = [
        [
            label,
            f"{np.percentile(taken, 50):.1f}",
            f"{np.percentile(taken, 95):.1f}",
            f"{np.percentile(taken, 50) / dense_p50:.2f}x",
        ]
        for label, taken in latency.items()
    ]
    _table(["Retrieve", "p50 ms", "p95 ms", "p50 vs dense"], rows)
    print(
        f"dense recall@10 of query_points against a NumPy exact top-10 over the {CHUNKS} vectors: "
        f"{np.mean(recall):.4f} ({len(recall)} queries). Local mode has no HNSW, so this is exact by "
        "construction; a Qdrant server (LLMOPS_QDRANT_URL) searches with HNSW, where this is the figure "
        "to watch (tuned with SearchParams(hnsw_ef=...), checked against SearchParams(exact=True)).",
        flush=True,
    )

    # Indexing into the large collection: the handler's per-document delete of stale chunks scans.
    extra = bench.sample()
    groups = _bare_points(bench.corpus, bench.vectors, {p.name for p in extra}, "bare/")
    bare_chunks = sum(len(g) for g in groups)
    bare_rate = bare_chunks / _bare_upsert(client, DATASET, groups, bench.batch)
    handler = _handler(bench.settings, bench.tokens, bench.index(client, bench.cached()))
    added, seconds = _index_through_handler(handler, _events(extra, "late/"), bench.batch, DATASET)
    _table(
        [f"{len(extra)} more documents into {CHUNKS} chunks", "chunks", "chunks/s", "vs bare"],
        [
            ["bare qdrant-client upsert", str(bare_chunks), f"{bare_rate:.0f}", "1.00x"],
            _rate_row("handler, MiniLM vectors precomputed", added, seconds, bare_rate),
        ],
    )


def run() -> None:
    settings = Settings(auth={"auth_disabled": True})
    tokens = ModelTokens()
    corpus = _corpus(settings, tokens)
    embedder = Embedder(None, settings.embed_batch_size)
    texts = [c.text for _, c in corpus.chunks]
    vectors, origin = _vectors(embedder, texts, settings)
    rng = np.random.default_rng(SEED)
    sample = [texts[i] for i in rng.choice(len(texts), min(SAMPLE_CHUNKS, len(texts)), replace=False)]
    started = time.perf_counter()
    embedder(sample)
    embed_rate = len(sample) / (time.perf_counter() - started)
    dropped = ", ".join(f"{n} {why}" for why, n in corpus.dropped.items())
    print(
        f"corpus: {len(corpus.packages)} package descriptions (site-packages/*.dist-info/METADATA of "
        f"this venv), {len(texts)} chunks ({settings.chunk_tokens} tokens, {settings.chunk_overlap_tokens} "
        f"overlap: the service's defaults)\nlabelled queries: {len(corpus.queries)} (query: a package's "
        f"Summary; relevant: every chunk of its description); left out: {dropped}\n"
        f"MiniLM vectors of the corpus: {origin}\n"
        f"MiniLM throughput on a {len(sample)}-chunk sample: {embed_rate:.0f} chunks/s "
        f"(batch {settings.embed_batch_size}, CPU); chunking alone (MiniLM's tokenizer): "
        f"{len(texts) / corpus.chunking_seconds:.0f} chunks/s; load average now {_load()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        bench = Bench(
            settings,
            Settings(auth={"auth_disabled": True}, reranker="mmr"),
            tokens,
            corpus,
            vectors,
            embedder,
            Path(tmp),
            rng,
        )
        with _local(None) as client:
            served = _indexing(bench, client)
            _quality_report(bench, client, served)
        with _local(None) as client:
            _scale(bench, client)
    print(f"load average at the end: {_load()} (other work on this machine slows every figure alike)")
