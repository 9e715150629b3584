"""The retrieval service as a process on the real broker: documents.cleaned in, chunks in Qdrant
(local mode), Retrieve over gRPC, retrieval.logged out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.events import DocumentCleaned, RetrievalLogged
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2 as pb
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2_grpc
from llmops.testing.platform import auth, eventually, publish_raw, read_topic, running_platform

pytestmark = pytest.mark.integration

FACTS = {
    "kepler": "# Kepler station\n\nThe chief engineer of Kepler station is Imogen Varga.\n\n"
    "# Supplies\n\nKepler station receives its water from comet ice hauled by the tug Ptarmigan.",
    "zorblat": "# The Zorblat reactor\n\nThe Zorblat reactor runs on crystallised helium-3 since 2091.",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("rag"), ["retrieval"]) as platform:
        yield platform


@pytest.fixture(scope="module")
def stub(platform: LocalPlatform) -> Iterator[retrieval_pb2_grpc.RetrievalServiceStub]:
    with grpc.insecure_channel(platform.address("retrieval")) as channel:
        yield retrieval_pb2_grpc.RetrievalServiceStub(channel)


def _cleaned(dataset: str, document_id: str, text: str) -> bytes:
    return (
        DocumentCleaned(
            document_id=document_id,
            dataset=dataset,
            batch_id="batch-1",
            snapshot_id="snap-1",
            text=text,
            content_hash=uuid.uuid4().hex,
            source=f"wiki/{document_id}",
        )
        .model_dump_json()
        .encode()
    )


async def test_documents_are_indexed_and_retrieved_with_their_facts(
    platform: LocalPlatform, stub: retrieval_pb2_grpc.RetrievalServiceStub
) -> None:
    md = auth(platform)
    dataset = f"station-{uuid.uuid4().hex[:6]}"
    await publish_raw(
        platform.bootstrap_servers,
        topics.DOCUMENTS_CLEANED,
        [_cleaned(dataset, d, t) for d, t in FACTS.items()],
    )

    def indexed() -> pb.IndexStatsResponse | None:
        stats = stub.IndexStats(pb.IndexStatsRequest(collection=dataset), metadata=md, timeout=30)
        return stats if stats.documents_count == 2 else None

    stats = await eventually(indexed, timeout=120)
    assert (
        stats.points_count == 3 and stats.vector_size == 384 and stats.embedding_model == "all-MiniLM-L6-v2"
    )
    assert stats.last_indexed_at.seconds > 0
    listed = stub.ListCollections(pb.ListCollectionsRequest(), metadata=md, timeout=30)
    assert dataset in [c.collection for c in listed.collections]

    for mode in (pb.RETRIEVAL_MODE_HYBRID, pb.RETRIEVAL_MODE_DENSE, pb.RETRIEVAL_MODE_SPARSE):
        reply = stub.Retrieve(
            pb.RetrieveRequest(
                collection=dataset,
                query="Who is the chief engineer?",
                top_k=2,
                mode=mode,
                request_id=f"q-{mode}",
            ),
            metadata=md,
            timeout=30,
        )
        assert "Imogen Varga" in reply.chunks[0].text, (mode, reply.chunks[0].text)
        assert (
            reply.chunks[0].document_id == "kepler"
            and reply.chunks[0].metadata["heading"] == "Kepler station"
        )
    logged = await read_topic(platform.bootstrap_servers, topics.RETRIEVAL_LOGGED, 3)
    events = [RetrievalLogged.model_validate_json(r.value) for r in logged]
    assert {e.mode for e in events} == {"hybrid", "dense", "sparse"}
    assert all(e.document_ids[0] == "kepler" and e.scores and e.collection == dataset for e in events)

    # A changed document replaces its chunks: exactly the new ones stay.
    await publish_raw(
        platform.bootstrap_servers,
        topics.DOCUMENTS_CLEANED,
        [_cleaned(dataset, "kepler", "# Kepler station\n\nThe chief engineer is now Odile Brandt.")],
    )

    def replaced() -> bool:
        stats = stub.IndexStats(pb.IndexStatsRequest(collection=dataset), metadata=md, timeout=30)
        return stats.points_count == 2

    await eventually(replaced, timeout=120)
    reply = stub.Retrieve(
        pb.RetrieveRequest(
            collection=dataset, query="chief engineer", top_k=5, filter={"document_id": "kepler"}
        ),
        metadata=md,
        timeout=30,
    )
    assert [c.text for c in reply.chunks] == ["# Kepler station\n\nThe chief engineer is now Odile Brandt."]


def test_bad_requests_get_clear_errors(
    platform: LocalPlatform, stub: retrieval_pb2_grpc.RetrievalServiceStub
) -> None:
    md = auth(platform)
    cases = [
        (pb.RetrieveRequest(collection="nowhere", query="x"), grpc.StatusCode.NOT_FOUND, "does not exist"),
        (
            pb.RetrieveRequest(collection="", query="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "collection is empty",
        ),
        (
            pb.RetrieveRequest(collection="c", query="x", top_k=1000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "top_k",
        ),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.Retrieve(request, metadata=md, timeout=30)
        assert err.value.code() == code and message in err.value.details()
