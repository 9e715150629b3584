"""Personal data that users type never leaves the service that received it.

Requests to serving (a prompt, and a RAG question that goes on to retrieval) and feedback (a comment
and a correction) carry one valid value of every kind the detectors know. Afterwards none of those
values is anywhere in ClickHouse (every table), on any Kafka topic, or in the labeling review queue;
their typed placeholders are, so the rows are there and redacted, not missing.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.rpc.feedback.v1 import feedback_pb2, feedback_pb2_grpc
from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as lpb
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core import pii
from llmops.testing.platform import auth, caught_up, eventually, query_monitoring, running_platform

pytestmark = pytest.mark.e2e


def _first_valid(candidates: Iterator[str], valid) -> str:  # noqa: ANN001
    return next(c for c in candidates if valid(c))


# One valid value per kind (the checksums computed, not hard-coded), written as people write them.
_AADHAAR = _first_valid((f"49187362051{d}" for d in range(10)), pii.in_aadhaar_valid)
_NIR_BODY = "1840575123456"
PLANTED: dict[str, str] = {
    pii.EMAIL: "ada.lovelace@analytical-engines.org",
    pii.IBAN: "DE89 3704 0044 0532 0130 00",
    pii.CREDIT_CARD: "4539 1488 0343 6467",
    pii.IP_ADDRESS: "81.2.69.160",
    pii.US_SSN: "536-22-8184",
    pii.ES_DNI: _first_valid((f"48193726{c}" for c in "ABCDEFGHJKLMNPQRSTVWXYZ"), pii.es_dni_valid),
    pii.NL_BSN: _first_valid((f"23145679{d}" for d in range(10)), pii.nl_bsn_valid),
    pii.IN_AADHAAR: f"{_AADHAAR[:4]} {_AADHAAR[4:8]} {_AADHAAR[8:]}",
    pii.FR_NIR: f"{_NIR_BODY}{97 - int(_NIR_BODY) % 97:02d}",
    pii.UK_NINO: "JG 10 37 28 B",
    pii.PHONE: "+44 20 7946 0958",
}


def _sentence() -> str:
    return (
        f"My email is {PLANTED[pii.EMAIL]}, my IBAN {PLANTED[pii.IBAN]}, my card {PLANTED[pii.CREDIT_CARD]},"
        f" I connect from {PLANTED[pii.IP_ADDRESS]}, my SSN is {PLANTED[pii.US_SSN]}, DNI"
        f" {PLANTED[pii.ES_DNI]}, BSN {PLANTED[pii.NL_BSN]}, Aadhaar {PLANTED[pii.IN_AADHAAR]}, NIR"
        f" {PLANTED[pii.FR_NIR]}, NI number {PLANTED[pii.UK_NINO]}, call me on {PLANTED[pii.PHONE]}."
    )


def _forms(value: str) -> set[str]:
    """The value as written, and without its spaces, dots and dashes (how a leak may look)."""
    return {value, re.sub(r"[\s.-]", "", value)} - {""}


ALL_TABLES = "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View%'"
LEAK_FORMS = {kind: _forms(value) for kind, value in PLANTED.items()}


def _leaks(text: str) -> list[str]:
    return sorted(kind for kind, forms in LEAK_FORMS.items() if any(form in text for form in forms))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    services = ["ingestion", "retrieval", "serving", "feedback", "monitoring", "labeling"]
    with running_platform(tmp_path_factory.mktemp("pii"), services) as platform:
        yield platform


def test_every_detector_catches_its_planted_value() -> None:
    # The premise: each planted value is one the detectors know (else the test below proves nothing).
    redacted, counts = pii.redact_pii(_sentence())
    assert counts == dict.fromkeys(PLANTED, 1), counts
    assert not _leaks(redacted), redacted


async def test_planted_pii_reaches_no_table_topic_or_queue(platform: LocalPlatform) -> None:
    md = auth(platform)
    dataset = f"pii-{uuid.uuid4().hex[:6]}"
    with grpc.insecure_channel(platform.address("ingestion")) as channel:
        batch = ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(
            iter(
                [
                    ingestion_pb2.IngestRequest(header=ingestion_pb2.IngestHeader(dataset=dataset)),
                    ingestion_pb2.IngestRequest(
                        document=ingestion_pb2.Document(
                            id="billing",
                            text="Invoices are sent on the first day of each month. Refunds take five "
                            "working days and go back to the card that paid.",
                        )
                    ),
                ]
            ),
            metadata=md,
            timeout=120,
        )
    assert batch.kept == 1
    with grpc.insecure_channel(platform.address("retrieval")) as channel:
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        await eventually(
            lambda: (
                retrieval.IndexStats(
                    retrieval_pb2.IndexStatsRequest(collection=dataset), metadata=md, timeout=30
                ).documents_count
                == 1
            ),
            timeout=180,
        )

    sentence = _sentence()
    with grpc.insecure_channel(platform.address("serving")) as channel:
        serving = serving_pb2_grpc.ServingServiceStub(channel)
        # The model is asked to repeat the sentence, so the completion carries PII too.
        plain = serving.Generate(
            serving_pb2.GenerateRequest(
                prompt=f"Repeat exactly: {sentence}", max_tokens=160, temperature=0, user="ada"
            ),
            metadata=md,
            timeout=300,
        )
        rag = serving.Generate(
            serving_pb2.GenerateRequest(
                prompt=f"When is my refund back? {sentence}",
                max_tokens=16,
                temperature=0,
                retrieval=serving_pb2.RetrievalOptions(collection=dataset, top_k=1),
            ),
            metadata=md,
            timeout=300,
        )
    assert len(rag.citations) == 1
    with grpc.insecure_channel(platform.address("feedback")) as channel:
        feedback_pb2_grpc.FeedbackServiceStub(channel).Submit(
            feedback_pb2.SubmitFeedbackRequest(
                request_id=plain.request_id,
                thumb=feedback_pb2.THUMB_DOWN,
                comment=f"Wrong. {sentence}",
                correction=f"The right answer mentions {PLANTED[pii.EMAIL]} and {PLANTED[pii.PHONE]}.",
            ),
            metadata=md,
            timeout=60,
        )

    bootstrap = platform.bootstrap_servers
    # Everything has been consumed where it goes: monitoring has the rows, labeling the task.
    for group, topic in (
        ("llmops-monitoring.inference", topics.INFERENCE_LOGGED),
        ("llmops-monitoring.feedback", topics.FEEDBACK_ACCEPTED),
        ("llmops-monitoring.retrieval", topics.RETRIEVAL_LOGGED),
        ("llmops-labeling.feedback", topics.FEEDBACK_ACCEPTED),
    ):
        await eventually(lambda g=group, t=topic: caught_up(bootstrap, g, t), timeout=120)
    requests = {plain.request_id, rag.request_id}
    stored = query_monitoring(
        platform,
        "SELECT request_id, prompt, completion FROM inference_log_v"
        " WHERE request_id IN ({a:String}, {b:String})",
        a=plain.request_id,
        b=rag.request_id,
    )
    assert {row[0] for row in stored} == requests
    # Present, and redacted: every placeholder is in the logged prompts.
    prompts = " ".join(row[1] for row in stored)
    for kind in PLANTED:
        assert f"[{kind}]" in prompts, (kind, prompts)

    # ClickHouse: every row of every table, as text.
    tables = [
        row[0]
        for row in query_monitoring(
            platform,
            ALL_TABLES,
        )
    ]
    assert "inference_log" in tables and "feedback" in tables and "retrieval_log" in tables
    found: dict[str, list[str]] = {}
    for table in tables:
        for row in query_monitoring(platform, f"SELECT * FROM {table}"):
            if leaked := _leaks(json.dumps(row, default=str, ensure_ascii=False)):
                found.setdefault(f"clickhouse {table}", []).extend(leaked)

    # Kafka: every record of every topic, from the beginning.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        names = sorted(t for t in await consumer.topics() if not t.startswith("__"))
        partitions = [TopicPartition(t, p) for t in names for p in (consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = 0
        for tp in partitions:
            deadline = time.monotonic() + 60
            while await consumer.position(tp) < ends[tp]:
                assert time.monotonic() < deadline, f"{tp} not read to its end in 60 s"
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for record in batch.get(tp, []):
                    records += 1
                    text = (record.value or b"").decode("utf-8", "replace")
                    if leaked := _leaks(text):
                        found.setdefault(f"kafka {tp.topic}", []).extend(leaked)
    finally:
        await consumer.stop()
    assert records > 0 and topics.INFERENCE_LOGGED in names

    # The labeling review queue (the thumbs-down feedback made a task).
    with grpc.insecure_channel(platform.address("labeling")) as channel:
        labeling = labeling_pb2_grpc.LabelingServiceStub(channel)
        tasks: dict[str, lpb.Task] = {}
        # A labeler is handed the task they hold until they finish it: ask as several labelers.
        for n in range(20):
            reply = labeling.NextTask(
                lpb.NextTaskRequest(queue="feedback-review", labeler_id=f"auditor-{n}"), metadata=md
            )
            if reply.WhichOneof("result") != "task":
                break
            tasks[reply.task.task_id] = reply.task
    assert tasks, "the thumbs-down feedback made no review task"
    for task in tasks.values():
        if leaked := _leaks(str(task)):
            found.setdefault("labeling queue", []).extend(leaked)

    assert not found, f"planted PII found: {found}"
