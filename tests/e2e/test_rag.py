"""Retrieval-augmented answers end to end: documents go in through ingestion, retrieval indexes them,
serving answers questions the base model cannot know, citing the chunks that hold each fact, and the
inference log in ClickHouse records the citations."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import grpc
import openai
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.testing.platform import auth, eventually, query_monitoring, running_platform

pytestmark = pytest.mark.e2e

# Invented facts (names, numbers and places that exist nowhere), one document each, with filler
# sentences so each document is a realistic paragraph and the fact is not the only thing in it.
CORPUS: dict[str, tuple[str, str, str]] = {
    # document id: (text, question, the fact the answer must contain)
    "quorvane": (
        "The Quorvane lighthouse stands on a basalt cliff above the northern harbour. It was rebuilt "
        "twice after storms. The keeper of the Quorvane lighthouse is Tobias Wrenfield. Visitors may "
        "climb the tower on Sundays.",
        "Who is the keeper of the Quorvane lighthouse?",
        "Tobias Wrenfield",
    ),
    "melrith": (
        "Melrith is a mountain village known for its wool market. The village bakery opened long ago. "
        "The river that runs through Melrith is called the Ossenbrook. Snow closes the pass in winter.",
        "What is the river that runs through Melrith called?",
        "Ossenbrook",
    ),
    "astrabel": (
        "The Astrabel orchestra tours the coastal towns each spring. Its concerts are free for children. "
        "The conductor of the Astrabel orchestra is Ines Karvonen. The orchestra rehearses in an old mill.",
        "Who is the conductor of the Astrabel orchestra?",
        "Ines Karvonen",
    ),
    "pellucid": (
        "Pellucid Labs builds instruments for measuring glacier movement. The company was founded by two "
        "surveyors. The flagship sensor of Pellucid Labs is named Frostwatch. It is used on four continents.",
        "What is the flagship sensor of Pellucid Labs named?",
        "Frostwatch",
    ),
    "drummond": (
        "Drummond Island has one ferry a day and no cars. Puffins nest on its western shore. The only "
        "school on Drummond Island is headed by Marguerite Olsztyn. Fresh water comes from a spring.",
        "Who heads the only school on Drummond Island?",
        "Marguerite Olsztyn",
    ),
    "velloran": (
        "The Velloran festival celebrates the harvest with lanterns and music. It lasts three days. "
        "The traditional dish of the Velloran festival is plum dumplings with honey. Dancers wear green.",
        "What is the traditional dish of the Velloran festival?",
        "plum dumplings",
    ),
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    services = ["ingestion", "retrieval", "serving", "monitoring"]
    with running_platform(tmp_path_factory.mktemp("rag-e2e"), services) as platform:
        yield platform


def _ingest(platform: LocalPlatform, dataset: str) -> ingestion_pb2.IngestResponse:
    def requests() -> Iterator[ingestion_pb2.IngestRequest]:
        yield ingestion_pb2.IngestRequest(header=ingestion_pb2.IngestHeader(dataset=dataset))
        for doc_id, (text, _, _) in CORPUS.items():
            yield ingestion_pb2.IngestRequest(
                document=ingestion_pb2.Document(id=doc_id, text=text, source_uri=f"wiki/{doc_id}")
            )

    with grpc.insecure_channel(platform.address("ingestion")) as channel:
        return ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(
            requests(), metadata=auth(platform), timeout=120
        )


async def test_answers_cite_the_chunks_that_hold_the_facts(platform: LocalPlatform) -> None:
    md = auth(platform)
    dataset = f"towns-{uuid.uuid4().hex[:6]}"
    batch = _ingest(platform, dataset)
    assert batch.kept == len(CORPUS), batch

    with grpc.insecure_channel(platform.address("retrieval")) as channel:
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channel)

        def indexed() -> bool:
            stats = retrieval.IndexStats(
                retrieval_pb2.IndexStatsRequest(collection=dataset), metadata=md, timeout=30
            )
            return stats.documents_count == len(CORPUS)

        await eventually(indexed, timeout=180)

    answered = 0
    request_ids = {}
    with grpc.insecure_channel(platform.address("serving")) as channel:
        serving = serving_pb2_grpc.ServingServiceStub(channel)
        for doc_id, (_, question, fact) in CORPUS.items():
            reply = serving.Generate(
                serving_pb2.GenerateRequest(
                    prompt=question,
                    max_tokens=32,
                    temperature=0,
                    retrieval=serving_pb2.RetrievalOptions(collection=dataset, top_k=3),
                ),
                metadata=md,
                timeout=180,
            )
            cited = [c.document_id for c in reply.citations]
            print(f"{question!r} -> {reply.text!r} (cited {cited})")
            # The chunk holding the fact is cited, and first: retrieval found it for this question.
            assert cited and cited[0].endswith(doc_id), (question, cited)
            assert [c.index for c in reply.citations] == list(range(1, len(cited) + 1))
            assert all(c.collection == dataset and c.chunk_id for c in reply.citations)
            answered += fact.lower() in reply.text.lower()
            request_ids[reply.request_id] = [c.chunk_id for c in reply.citations]
    share = answered / len(CORPUS)
    print(f"answers containing their fact: {answered} of {len(CORPUS)} ({share:.0%})")
    assert share >= 0.8

    # The log records what each answer was given.
    def logged() -> list[list]:
        rows = query_monitoring(
            platform,
            "SELECT request_id, retrieval_collection, citation_chunk_ids FROM inference_log_v "
            "WHERE retrieval_collection = {c:String}",
            c=dataset,
        )
        return rows if len(rows) == len(CORPUS) else []

    rows = await eventually(logged, timeout=60)
    assert {r[0]: list(r[2]) for r in rows} == request_ids

    # The same options as extra fields of the OpenAI API, and on the command line.
    _, question, _ = CORPUS["pellucid"]
    client = openai.OpenAI(base_url=platform.openai_base_url, api_key=platform.api_key(), max_retries=0)
    chat = client.chat.completions.create(
        model="",
        messages=[{"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
        extra_body={"retrieval": {"collection": dataset, "top_k": 3}},
    )
    assert chat.model_extra["citations"][0]["document_id"].endswith("pellucid")
    # An answer over HTTP is logged like one over gRPC, with what it cited.
    http_logged = await eventually(
        lambda: query_monitoring(
            platform,
            "SELECT citation_document_ids FROM inference_log_v WHERE request_id = {r:String}",
            r=chat.model_extra["request_id"],
        ),
        timeout=60,
    )
    assert list(http_logged[0][0]) == [c["document_id"] for c in chat.model_extra["citations"]]
    env = {
        **os.environ,
        "LLMOPS_SERVING_ADDRESS": platform.address("serving"),
        "LLMOPS_API_KEY": platform.api_key(),
        "COLUMNS": "200",
    }
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "llmops.cli", "generate", question, "--collection", dataset, "--top-k", "3",
         "--temperature", "0", "--max-tokens", "32", "--no-stream"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert chat.choices[0].message.content.strip() in shown.stdout
    assert "[1] " in shown.stderr and "pellucid" in shown.stderr.split("[2]")[0]


async def test_retrieval_away_fails_clearly_or_answers_without_context_when_allowed(
    platform: LocalPlatform,
) -> None:
    md = auth(platform)
    platform.stop("retrieval")
    try:
        with grpc.insecure_channel(platform.address("serving")) as channel:
            serving = serving_pb2_grpc.ServingServiceStub(channel)
            request = serving_pb2.GenerateRequest(
                prompt="Who is the keeper of the Quorvane lighthouse?",
                max_tokens=8,
                temperature=0,
                retrieval=serving_pb2.RetrievalOptions(collection="towns"),
            )
            with pytest.raises(grpc.RpcError) as refused:
                serving.Generate(request, metadata=md, timeout=60)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retrieval is unavailable" in refused.value.details()
            request.retrieval.allow_without_context = True
            reply = serving.Generate(request, metadata=md, timeout=120)
            assert reply.retrieval_skipped and not reply.citations and reply.text
    finally:
        platform.start_services(["retrieval"])
        await asyncio.sleep(0)


def test_an_unknown_collection_is_not_found(platform: LocalPlatform) -> None:
    with grpc.insecure_channel(platform.address("serving")) as channel:
        with pytest.raises(grpc.RpcError) as err:
            serving_pb2_grpc.ServingServiceStub(channel).Generate(
                serving_pb2.GenerateRequest(
                    prompt="anything",
                    max_tokens=4,
                    retrieval=serving_pb2.RetrievalOptions(collection="no-such-collection"),
                ),
                metadata=auth(platform),
                timeout=60,
            )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-collection" in err.value.details()
