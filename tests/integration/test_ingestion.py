"""Ingestion as a real process: the CLI streams a folder, cleaned documents arrive on Kafka, and the
snapshot holds exactly the kept ones; the dedup memory survives batches and restarts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.events import DocumentRaw
from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.testing.platform import auth, eventually, publish_raw, read_topic, running_platform

pytestmark = pytest.mark.integration

ARTICLE = (
    "The river town kept its old stone bridge, and every spring the market filled the square with "
    "farmers selling cheese, bread and early vegetables. Visitors walked along the water to the mill, "
    "where a small museum explains how grain was ground for three centuries before the railway came. "
    "In the evening the bells of the church rang across the valley while families ate outside. "
    "The school by the bridge still teaches forty children, and the library opens on Tuesdays and "
    "Saturdays, when retired teachers read stories aloud and help with homework. In winter the river "
    "freezes near the bank, and the older boys test the ice with long poles before anyone skates. "
    "A ferry used to cross at the bend, and the rope posts can still be seen in the reeds."
)
OTHER = (
    "Modern compilers translate source code into an intermediate representation, optimise it with "
    "passes such as inlining, constant folding and loop unrolling, and finally emit machine code for "
    "the target processor. Register allocation and instruction scheduling matter a great deal, because "
    "memory is slow compared with registers and modern cores can start several instructions per cycle. "
    "Profile guided optimisation feeds measurements from real runs back into the compiler, which then "
    "lays out hot code together and predicts branches better. Link time optimisation lets the compiler "
    "see across files, so small functions from other modules can be inlined where they are called."
)
ROW = (
    "The community garden opened twelve new plots this year, with raised beds for older members, a "
    "shared tool shed, rain barrels along the fence and a compost corner run by the primary school."
)
FEED = [
    "Quarterly sales of electric bicycles rose sharply in northern cities, where new protected lanes "
    "and a purchase subsidy made commuting by bike cheaper than the bus for most working adults.",
    "The orchestra announced a season of rarely performed baroque operas, staged in the old theatre "
    "with period instruments, candle lighting and a chorus drawn from three local choirs.",
    "Researchers mapped the nesting sites of a rare seabird along the cliffs, counting eggs from drones "
    "so that the colonies would not be disturbed during the short arctic breeding season.",
]


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inbox")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, inbox: Path) -> Iterator[LocalPlatform]:
    root = tmp_path_factory.mktemp("ingestion")
    with running_platform(root, ["ingestion"], LLMOPS_INGESTION_ALLOWED_ROOTS=json.dumps([str(inbox)])) as p:
        yield p


def _stub(platform: LocalPlatform) -> tuple[ingestion_pb2_grpc.IngestionServiceStub, grpc.Channel]:
    channel = grpc.insecure_channel(platform.address("ingestion"))
    return ingestion_pb2_grpc.IngestionServiceStub(channel), channel


def _cli(platform: LocalPlatform, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LLMOPS_INGESTION_ADDRESS": platform.address("ingestion"),
        "LLMOPS_API_KEY": platform.api_key(),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "llmops.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _batch(platform: LocalPlatform, batch_id: str) -> ingestion_pb2.BatchInfo:
    stub, channel = _stub(platform)
    with channel:
        return stub.GetBatch(
            ingestion_pb2.GetBatchRequest(batch_id=batch_id), metadata=auth(platform), timeout=30
        )


def _batch_id(output: str) -> str:
    return next(w for w in output.split() if w.startswith("batch-")).rstrip(":")


async def test_cli_ingests_a_folder_and_the_snapshot_holds_exactly_the_kept_documents(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text(
        ARTICLE + " Write to mayor@rivertown.example or pay with 4111 1111 1111 1111."
    )
    (folder / "b.html").write_text(
        f"<html><head><style>p {{}}</style></head><body><p>{OTHER}</p></body></html>"
    )
    (folder / "c.txt").write_text(
        ARTICLE + " Write to mayor@rivertown.example or pay with 4111 1111 1111 1111."
    )
    (folder / "d.md").write_text(OTHER.replace("great deal", "great many"))
    (folder / "e.txt").write_text("too short")
    (folder / "f.txt").write_bytes(b"caf\xe9 au lait " * 10)

    result = _cli(platform, "ingest", str(folder), "--dataset", "towns")
    assert result.returncode == 0, result.stderr
    info = _batch(platform, _batch_id(result.stdout))
    c = info.counts
    assert info.state == ingestion_pb2.BATCH_STATE_SUCCEEDED
    counts = (c.received, c.html_stripped, c.dropped_quality, c.dropped_exact_dup, c.dropped_near_dup, c.kept)
    assert counts == (6, 1, 1, 1, 1, 2)
    assert c.errors == 1 and info.errors[0].source == "f.txt" and "UTF-8" in info.errors[0].reason
    # Redaction runs before dedup, so the exact duplicate's PII was redacted (and counted) too.
    assert dict(c.pii_redacted_by_type) == {"EMAIL": 2, "CREDIT_CARD": 2} and c.pii_redacted == 2
    assert "f.txt" in result.stderr  # the CLI reports the bad item

    cleaned = [
        json.loads(r.value)
        for r in await read_topic(platform.bootstrap_servers, topics.DOCUMENTS_CLEANED, 2)
        if json.loads(r.value)["batch_id"] == info.batch_id
    ]
    assert sorted(d["document_id"] for d in cleaned) == ["a.txt", "b.html"]
    town = next(d for d in cleaned if d["document_id"] == "a.txt")
    assert "[EMAIL]" in town["text"] and "[CREDIT_CARD]" in town["text"]
    assert "mayor@rivertown.example" not in town["text"] and "4111" not in town["text"]
    html = next(d for d in cleaned if d["document_id"] == "b.html")
    assert "<p>" not in html["text"] and "p {}" not in html["text"]
    assert all(d["snapshot_id"] == info.snapshot_id for d in cleaned)

    with ArtifactStore.open_uri(info.snapshot_uri) as f:
        snapshot = pq.read_table(io.BytesIO(f.read())).to_pylist()
    assert sorted(r["document_id"] for r in snapshot) == ["a.txt", "b.html"]
    assert {r["content_hash"] for r in snapshot} == {d["content_hash"] for d in cleaned}

    completed = [
        json.loads(r.value)
        for r in await read_topic(platform.bootstrap_servers, topics.INGESTION_BATCH_COMPLETED, 1)
    ]
    assert any(e["batch_id"] == info.batch_id and e["counts"]["kept"] == 2 for e in completed)

    # The same folder again: everything is now a duplicate of the earlier batch.
    again = _batch(platform, _batch_id(_cli(platform, "ingest", str(folder), "--dataset", "towns").stdout))
    assert (again.counts.kept, again.counts.dropped_exact_dup, again.counts.dropped_near_dup) == (0, 3, 1)

    # After a restart the dedup memory is still there: a near-duplicate of an earlier document is caught.
    platform.stop("ingestion")
    platform.start_services(["ingestion"])
    near = tmp_path / "near.jsonl"
    near.write_text(
        json.dumps({"id": "n1", "text": ARTICLE.replace("cheese", "butter") + " Pay with cash."}) + "\n"
    )
    after = _batch(platform, _batch_id(_cli(platform, "ingest", str(near), "--dataset", "towns").stdout))
    assert (after.counts.kept, after.counts.dropped_near_dup) == (0, 1)


def test_ingest_file_reads_only_allowed_folders_and_reports_bad_rows(
    platform: LocalPlatform, inbox: Path, tmp_path: Path
) -> None:
    data = inbox / "rows.jsonl"
    data.write_text(
        "\n".join(
            [
                json.dumps({"id": "r1", "body": ROW + " Call +44 20 7946 0958."}),
                "{broken",
                json.dumps({"id": "r3"}),
            ]
        )
        + "\n"
    )
    stub, channel = _stub(platform)
    with channel:
        reply = stub.IngestFile(
            ingestion_pb2.IngestFileRequest(uri=str(data), dataset="rows", text_field="body"),
            metadata=auth(platform),
            timeout=60,
        )
        assert (reply.received, reply.kept, reply.errors) == (3, 1, 2)
        info = stub.GetBatch(ingestion_pb2.GetBatchRequest(batch_id=reply.batch_id), metadata=auth(platform))
        reasons = {e.position: e.reason for e in info.errors}
        assert "not valid JSON" in reasons[2] and "no text in field 'body'" in reasons[3]
        assert dict(info.counts.pii_redacted_by_type) == {"PHONE": 1}

        outside = tmp_path / "secret.jsonl"
        outside.write_text(json.dumps({"text": OTHER}) + "\n")
        with pytest.raises(grpc.RpcError) as err:
            stub.IngestFile(
                ingestion_pb2.IngestFileRequest(uri=str(outside), dataset="rows"), metadata=auth(platform)
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for request, message in [
            (ingestion_pb2.IngestFileRequest(uri=str(data), dataset=""), "dataset is empty"),
            (ingestion_pb2.IngestFileRequest(uri=str(inbox / "none.jsonl"), dataset="x"), "does not exist"),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                stub.IngestFile(request, metadata=auth(platform))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.GetBatch(ingestion_pb2.GetBatchRequest(batch_id="batch-nope"), metadata=auth(platform))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_apps_push_documents_on_kafka(platform: LocalPlatform) -> None:
    events = [DocumentRaw(document_id=f"k{i}", dataset="pushed", text=text) for i, text in enumerate(FEED)]
    events.append(DocumentRaw(document_id="k-copy", dataset="pushed", text=FEED[0]))
    await publish_raw(
        platform.bootstrap_servers, topics.DOCUMENTS_RAW, [e.model_dump_json().encode() for e in events]
    )

    async def pushed_totals() -> dict[str, int] | None:
        # Each Kafka fetch becomes a batch, so the four documents may arrive in more than one.
        totals: dict[str, int] = {}
        for r in await read_topic(platform.bootstrap_servers, topics.INGESTION_BATCH_COMPLETED, 1):
            event = json.loads(r.value)
            if event["dataset"] == "pushed":
                for key, value in event["counts"].items():
                    totals[key] = totals.get(key, 0) + value
        return totals if totals.get("received") == 4 else None

    totals = await eventually(pushed_totals, timeout=60)
    assert (totals["kept"], totals["dropped_exact_dup"]) == (3, 1)
