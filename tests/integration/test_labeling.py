"""Labeling round trip over gRPC with the real platform: tasks from ingestion and from feedback, a
labeling function, two human labelers and their agreement, the LLM judge on real serving, and a
dataset version whose id is the same on a second run."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import grpc
import pyarrow.parquet as pq
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.artifacts import ArtifactStore
from llmops.testing.platform import (
    as_json,
    auth,
    caught_up,
    eventually,
    publish_raw,
    query_monitoring,
    read_topic,
    running_platform,
)

pytestmark = pytest.mark.integration

DOCS = {
    "bridge": "The old stone bridge over the river was rebuilt after the flood, and the ferry that "
    "crossed at the bend now carries walkers to the mill museum on summer weekends.",
    "valley": "Hikers cross the valley on a trail past the lake, stay in a mountain hut and reach the "
    "pass at sunrise, when the villages below are still in the shade of the peaks.",
    "compiler": "The compiler inlines small functions, unrolls hot loops and allocates registers before "
    "it emits machine code, and link time optimisation lets it see across modules.",
    "kernel": "The operating system kernel schedules threads on every core, maps virtual memory to "
    "physical pages and handles interrupts from the network card and the disks.",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("labeling")) as platform:
        yield platform


@pytest.fixture(scope="module")
def labeling(platform: LocalPlatform) -> Iterator[labeling_pb2_grpc.LabelingServiceStub]:
    with grpc.insecure_channel(platform.address("labeling")) as channel:
        yield labeling_pb2_grpc.LabelingServiceStub(channel)


def _ingest(platform: LocalPlatform, dataset: str) -> ingestion_pb2.IngestResponse:
    def requests() -> Iterator[ingestion_pb2.IngestRequest]:
        yield ingestion_pb2.IngestRequest(header=ingestion_pb2.IngestHeader(dataset=dataset))
        for doc_id, text in DOCS.items():
            yield ingestion_pb2.IngestRequest(document=ingestion_pb2.Document(id=doc_id, text=text))

    with grpc.insecure_channel(platform.address("ingestion")) as channel:
        return ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(
            requests(), metadata=auth(platform), timeout=60
        )


def _label_all(
    stub: labeling_pb2_grpc.LabelingServiceStub, platform: LocalPlatform, queue: str, labeler: str, choose
) -> int:  # noqa: ANN001
    done = 0
    while True:
        reply = stub.NextTask(pb.NextTaskRequest(queue=queue, labeler_id=labeler), metadata=auth(platform))
        if reply.WhichOneof("result") == "queue_empty":
            return done
        task = reply.task
        stub.SubmitLabel(
            pb.SubmitLabelRequest(
                task_id=task.task_id,
                lease_id=task.lease_id,
                labeler_id=labeler,
                class_label=choose(task.input),
            ),
            metadata=auth(platform),
        )
        done += 1


async def test_labeling_round_trip(
    platform: LocalPlatform, labeling: labeling_pb2_grpc.LabelingServiceStub
) -> None:
    md = auth(platform)
    queue = labeling.CreateQueue(
        pb.CreateQueueRequest(
            name="topics",
            task_type=pb.TASK_TYPE_CLASSIFICATION,
            label_set=["tech", "travel"],
            labelers_per_task=2,
            instructions="What is the text about?",
            metadata={
                "documents_dataset": "articles",
                "lf.keyword.tech": "compiler|kernel",
                "lf.keyword.travel": "river",
            },
        ),
        metadata=md,
    )
    assert queue.name == "topics" and queue.total_tasks == 0
    with pytest.raises(grpc.RpcError) as err:
        labeling.CreateQueue(
            pb.CreateQueueRequest(name="topics", task_type=pb.TASK_TYPE_CLASSIFICATION, label_set=["x"]),
            metadata=md,
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # Tasks from ingestion: each cleaned document of the dataset becomes a task.
    batch = _ingest(platform, "articles")
    assert batch.kept == 4
    await eventually(
        lambda: labeling.GetQueue(pb.GetQueueRequest(name="topics"), metadata=md).total_tasks == 4
    )

    # A labeling function, applied to the tasks already there.
    registered = labeling.RegisterLabelingFunction(
        pb.RegisterLabelingFunctionRequest(queue="topics", name="keyword", version="1"), metadata=md
    )
    assert (registered.tasks_labeled, registered.tasks_abstained) == (3, 1)  # "valley" matches no keyword
    with pytest.raises(grpc.RpcError) as err:
        labeling.RegisterLabelingFunction(
            pb.RegisterLabelingFunctionRequest(queue="topics", name="nope", version="1"), metadata=md
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "keyword@1" in err.value.details()

    # Two humans. Bob disagrees with Alice on "bridge".
    tech = {"compiler", "kernel"}
    assert (
        _label_all(
            labeling, platform, "topics", "alice", lambda t: "tech" if t.document_id in tech else "travel"
        )
        == 4
    )
    assert (
        _label_all(
            labeling,
            platform,
            "topics",
            "bob",
            lambda t: "tech" if t.document_id in tech | {"bridge"} else "travel",
        )
        == 4
    )
    # A third labeler finds nothing: every task has its two labels.
    empty = labeling.NextTask(pb.NextTaskRequest(queue="topics", labeler_id="carol"), metadata=md)
    assert empty.WhichOneof("result") == "queue_empty"
    assert labeling.GetQueue(pb.GetQueueRequest(name="topics"), metadata=md).completed_tasks == 4

    agreement = labeling.Agreement(pb.AgreementRequest(queue="topics", include_pair_counts=True), metadata=md)
    # Alice: 2 travel, 2 tech; Bob: 1 travel, 3 tech; observed 3/4, expected 1/2 -> kappa 0.5.
    assert agreement.metric == pb.AGREEMENT_METRIC_COHEN_KAPPA and agreement.value == pytest.approx(0.5)
    assert (agreement.n_items, agreement.n_labelers) == (4, 2)

    # The LLM judge on real serving: every task is labeled or counted as failed (unreadable answer).
    judged = labeling.RunJudge(pb.RunJudgeRequest(queue="topics"), metadata=md, timeout=300)
    assert judged.tasks_labeled + judged.tasks_failed == 4
    judge_labels = labeling.ListLabels(
        pb.ListLabelsRequest(queue="topics", source=pb.LABEL_SOURCE_JUDGE), metadata=md
    )
    assert len(judge_labels.labels) == judged.tasks_labeled
    assert all(label.labeler_id.startswith("judge:classification@v1/") for label in judge_labels.labels)
    again = labeling.RunJudge(pb.RunJudgeRequest(queue="topics"), metadata=md, timeout=300)
    assert again.tasks_labeled == 0  # the same prompt version labels a task once

    # A dataset version: same inputs, same id; humans win over the rule and the judge.
    request = pb.CreateDatasetVersionRequest(
        dataset="topics-sft", queues=["topics"], eval_fraction=0.25, seed=7
    )
    first = labeling.CreateDatasetVersion(request, metadata=md)
    second = labeling.CreateDatasetVersion(request, metadata=md)
    assert first.version_id == second.version_id and first.uri == second.uri
    assert first.train_count + first.eval_count == 4
    assert list(first.lineage.snapshot_ids) == [batch.snapshot_id]
    assert {"alice", "bob"} <= set(first.lineage.labeler_ids)
    with ArtifactStore.open_uri(first.uri) as f:
        rows = {r["document_id"]: r for r in pq.read_table(io.BytesIO(f.read())).to_pylist()}
    assert rows["compiler"]["completion"] == "tech" and rows["valley"]["completion"] == "travel"
    assert rows["bridge"]["completion"] in ("tech", "travel") and rows["bridge"]["resolution"].startswith(
        "tie"
    )
    assert (
        "What is the text about?" in rows["kernel"]["prompt"] and DOCS["kernel"] in rows["kernel"]["prompt"]
    )
    created = [
        json.loads(r.value)
        for r in await read_topic(platform.bootstrap_servers, topics.DATASETS_VERSION_CREATED, 1)
    ]
    assert any(e["version_id"] == first.version_id for e in created)
    labels = [
        json.loads(r.value) for r in await read_topic(platform.bootstrap_servers, topics.LABELS_CREATED, 8)
    ]
    assert {e["source"] for e in labels} >= {"human", "rule"}


async def test_low_feedback_becomes_a_review_task_with_the_answer(
    platform: LocalPlatform, labeling: labeling_pb2_grpc.LabelingServiceStub
) -> None:
    md = auth(platform)
    with grpc.insecure_channel(platform.address("serving")) as channel:
        answer = serving_pb2_grpc.ServingServiceStub(channel).Generate(
            serving_pb2.GenerateRequest(prompt="What is two plus two?", max_tokens=12, temperature=0),
            metadata=md,
            timeout=120,
        )
    short_shape = as_json({"request_id": answer.request_id, "thumb": "down", "correction": "Four."})
    await publish_raw(
        platform.bootstrap_servers,
        topics.FEEDBACK_SUBMITTED,
        [
            short_shape,
            # Good feedback makes no task.
            as_json({"request_id": f"other-{uuid.uuid4()}", "thumb": "up"}),
            # The app published the same message twice (its retry): still one feedback, one task.
            short_shape,
        ],
    )

    def review_task() -> pb.Task | None:
        reply = labeling.NextTask(
            pb.NextTaskRequest(queue="feedback-review", labeler_id="reviewer"), metadata=md
        )
        return reply.task if reply.WhichOneof("result") == "task" else None

    task = await eventually(review_task, timeout=60)
    assert task.task_type == pb.TASK_TYPE_CORRECTION
    assert task.input.prompt == "What is two plus two?" and task.input.response == answer.text
    assert (
        task.input.metadata["user_correction"] == "Four." and task.input.metadata["feedback_score"] == "0.0"
    )
    label = labeling.SubmitLabel(
        pb.SubmitLabelRequest(
            task_id=task.task_id, lease_id=task.lease_id, labeler_id="reviewer", corrected_text="4"
        ),
        metadata=md,
    )
    assert label.corrected_text == "4" and label.source == pb.LABEL_SOURCE_HUMAN
    bootstrap = platform.bootstrap_servers
    # Everything published so far was handled by feedback, then by labeling and monitoring.
    await eventually(lambda: caught_up(bootstrap, "llmops-feedback", topics.FEEDBACK_SUBMITTED), timeout=60)
    for group in ("llmops-labeling.feedback", "llmops-monitoring.feedback"):
        await eventually(lambda g=group: caught_up(bootstrap, g, topics.FEEDBACK_ACCEPTED), timeout=60)
    queue = labeling.GetQueue(pb.GetQueueRequest(name="feedback-review"), metadata=md)
    assert queue.total_tasks == 1 and queue.completed_tasks == 1
    assert query_monitoring(
        platform, "SELECT count() FROM feedback_v WHERE request_id = {r:String}", r=answer.request_id
    ) == [[1]]


def test_bad_requests_get_clear_errors(
    platform: LocalPlatform, labeling: labeling_pb2_grpc.LabelingServiceStub
) -> None:
    md = auth(platform)
    labeling.CreateQueue(
        pb.CreateQueueRequest(name="ratings", task_type=pb.TASK_TYPE_RATING, rating_min=1, rating_max=5),
        metadata=md,
    )
    created = labeling.CreateTasks(
        pb.CreateTasksRequest(queue="ratings", tasks=[pb.TaskInput(prompt="Hi", response="Hello!")]),
        metadata=md,
    )
    assert created.created == 1
    task = labeling.NextTask(pb.NextTaskRequest(queue="ratings", labeler_id="dana"), metadata=md).task
    cases = [
        (
            pb.SubmitLabelRequest(task_id=task.task_id, lease_id=task.lease_id, labeler_id="dana", rating=9),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.SubmitLabelRequest(
                task_id=task.task_id, lease_id="no-such-lease", labeler_id="dana", rating=3
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            pb.SubmitLabelRequest(task_id=task.task_id, lease_id=task.lease_id, labeler_id="dana"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for request, code in cases:
        with pytest.raises(grpc.RpcError) as err:
            labeling.SubmitLabel(request, metadata=md)
        assert err.value.code() == code, err.value.details()
    for call, request in [
        (labeling.GetQueue, pb.GetQueueRequest(name="missing")),
        (labeling.GetDatasetVersion, pb.GetDatasetVersionRequest(version_id="nope")),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            call(request, metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
