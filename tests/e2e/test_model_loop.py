"""The model's life, end to end, with the processes `make up` starts: documents are ingested and
labeled, the labels become a dataset version, a LoRA fine-tune runs on Ray, the registry registers it
with its lineage, a gated promotion is blocked and then allowed, serving answers with the adapter
without a restart, and a rollback moves the alias back."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator

import fsspec
import grpc
import pyarrow.parquet as pq
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as lpb
from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.contracts.rpc.registry.v1 import registry_pb2 as rpb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.contracts.rpc.training.v1 import training_pb2 as tpb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME
from llmops.testing.platform import auth, eventually, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # vLLM start + a fine-tune on 2 shared cores

# Evaluation kept small: the answers are one word; one torch thread is fastest on a busy small machine.
ENV = {
    "LLMOPS_TRAINING_EVAL_MAX_GENERATE_EXAMPLES": "6",
    "LLMOPS_TRAINING_EVAL_MAX_NEW_TOKENS": "6",
    "LLMOPS_TRAINING_EVAL_NUM_THREADS": "1",
}

TOPICS = {
    "travel": "river bridge valley mountain hotel beach ferry harbour village museum trail".split(),
    "tech": "compiler kernel database server network cache thread memory router protocol laptop chip".split(),
}
FILLER = "the a of and with near during after before while every some many old new small busy".split()
INSTRUCTIONS = "Answer with one word, travel or tech: what is this text about?"


def _documents(n_per_topic: int) -> dict[str, tuple[str, str]]:
    """Distinct synthetic documents (no near-duplicates), each about one topic."""
    rng = random.Random(11)
    docs = {}
    for topic, words in TOPICS.items():
        for i in range(n_per_topic):
            text = " ".join(rng.choice(words) if j % 2 else rng.choice(FILLER) for j in range(40))
            docs[f"{topic}-{i}"] = (topic, text.capitalize() + ".")
    return docs


DOCS = _documents(12)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("loop"), **ENV) as platform:
        yield platform


def _read_rows(uri: str) -> list[dict]:
    with fsspec.open(uri, "rb") as f:
        return pq.read_table(f).to_pylist()


def _cli(platform: LocalPlatform, *args: str) -> str:
    """Run ``llmops ARGS`` against the platform; its standard output (it must succeed)."""
    env = {
        **os.environ,
        "LLMOPS_API_KEY": platform.api_key(),
        **{f"LLMOPS_{s.upper()}_ADDRESS": platform.address(s) for s in ("labeling", "training", "registry")},
        "COLUMNS": "400",
    }
    done = subprocess.run(
        [sys.executable, "-m", "llmops.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"llmops {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def _stub(platform: LocalPlatform, service: str, stub_class):  # noqa: ANN001, ANN202
    return stub_class(grpc.insecure_channel(platform.address(service)))


async def test_feedback_to_a_better_model(platform: LocalPlatform) -> None:
    md = auth(platform)
    ingestion = _stub(platform, "ingestion", ingestion_pb2_grpc.IngestionServiceStub)
    labeling = _stub(platform, "labeling", labeling_pb2_grpc.LabelingServiceStub)
    training = _stub(platform, "training", training_pb2_grpc.TrainingServiceStub)
    registry = _stub(platform, "registry", registry_pb2_grpc.RegistryServiceStub)
    serving = _stub(platform, "serving", serving_pb2_grpc.ServingServiceStub)

    # Data in: a labeling queue asks for the dataset's documents; ingest them.
    labeling.CreateQueue(
        lpb.CreateQueueRequest(
            name="topic",
            task_type=lpb.TASK_TYPE_CLASSIFICATION,
            label_set=["tech", "travel"],
            instructions=INSTRUCTIONS,
            metadata={"documents_dataset": "articles"},
        ),
        metadata=md,
    )

    def requests() -> Iterator[ingestion_pb2.IngestRequest]:
        yield ingestion_pb2.IngestRequest(header=ingestion_pb2.IngestHeader(dataset="articles"))
        for doc_id, (_, text) in DOCS.items():
            yield ingestion_pb2.IngestRequest(document=ingestion_pb2.Document(id=doc_id, text=text))

    batch = ingestion.Ingest(requests(), metadata=md, timeout=120)
    assert batch.kept == len(DOCS), batch
    await eventually(
        lambda: labeling.GetQueue(lpb.GetQueueRequest(name="topic"), metadata=md).total_tasks == len(DOCS),
        timeout=60,
    )

    # A human labels every task; the labels become a dataset version.
    while True:
        reply = labeling.NextTask(lpb.NextTaskRequest(queue="topic", labeler_id="ann"), metadata=md)
        if reply.WhichOneof("result") == "queue_empty":
            break
        topic = DOCS[reply.task.input.document_id][0]
        labeling.SubmitLabel(
            lpb.SubmitLabelRequest(
                task_id=reply.task.task_id, lease_id=reply.task.lease_id, labeler_id="ann", class_label=topic
            ),
            metadata=md,
        )
    # Frozen into a dataset version with the CLI, as a user would.
    created = _cli(
        platform,
        "datasets",
        "create",
        "topic-sft",
        "--queue",
        "topic",
        "--eval-fraction",
        "0.25",
        "--seed",
        "3",
    )
    version_id = re.search(r"dataset version ([0-9a-f]{64})", created).group(1)
    version = labeling.GetDatasetVersion(lpb.GetDatasetVersionRequest(version_id=version_id), metadata=md)
    assert version.train_count + version.eval_count == len(DOCS)
    train_rows = [r for r in _read_rows(version.uri) if r["split"] == "train"]
    assert len(train_rows) == version.train_count

    # The model exists with a gate the first fine-tune cannot pass.
    registry.CreateModel(
        rpb.CreateModelRequest(
            name="topic-bot",
            base_model=SMOLLM2_NAME,
            gate=[rpb.GateRule(metric="exact_match", comparator=rpb.COMPARATOR_GTE, threshold=1.01)],
        ),
        metadata=md,
    )

    # Fine-tune on Ray with LoRA.
    job = training.SubmitJob(
        tpb.SubmitJobRequest(
            spec=tpb.JobSpec(
                base_model=SMOLLM2_NAME,
                dataset_version_id=version.version_id,
                method=tpb.TRAINING_METHOD_SFT_LORA,
                model_name="topic-bot",
                hyperparameters=tpb.Hyperparameters(
                    lora_rank=8,
                    lora_alpha=16,
                    learning_rate=2e-3,
                    batch_size=4,
                    max_length=128,
                    max_steps=24,
                    seed=1,
                ),
                resources=tpb.Resources(num_workers=1, cpus_per_worker=1),
            ),
            idempotency_key="topic-bot-1",
        ),
        metadata=md,
    )
    progress = list(
        training.StreamProgress(tpb.StreamProgressRequest(job_id=job.job_id), metadata=md, timeout=900)
    )
    assert progress and progress[-1].state == tpb.JOB_STATE_SUCCEEDED, progress[-1:]
    assert progress[-1].step == 24 and any(p.loss > 0 for p in progress)
    finished = training.GetJob(tpb.GetJobRequest(job_id=job.job_id), metadata=md)
    assert finished.adapter_uri and {"eval_loss", "rouge_l", "exact_match"} <= set(finished.metrics)

    # Registered automatically, with its lineage back to the ingestion batch.
    registered = await eventually(
        lambda: registry.GetVersion(rpb.GetVersionRequest(model="topic-bot", version=1), metadata=md),
        timeout=60,
    )
    assert registered.training_job_id == job.job_id and registered.dataset_version_id == version.version_id
    assert registered.artifact_uri == finished.adapter_uri
    # The training job learns which registry version its adapter became.
    await eventually(
        lambda: training.GetJob(tpb.GetJobRequest(job_id=job.job_id), metadata=md).registered_version == 1,
        timeout=30,
    )
    lineage = registry.GetLineage(rpb.GetLineageRequest(model="topic-bot", version=1), metadata=md)
    kinds = {rpb.LineageNodeKind.Name(n.kind) for n in lineage.nodes}
    assert {
        "LINEAGE_NODE_KIND_INGESTION_BATCH",
        "LINEAGE_NODE_KIND_SNAPSHOT",
        "LINEAGE_NODE_KIND_DATASET_VERSION",
        "LINEAGE_NODE_KIND_TRAINING_JOB",
        "LINEAGE_NODE_KIND_MODEL_VERSION",
    } <= kinds
    assert any(n.id == batch.batch_id or batch.batch_id in n.id for n in lineage.nodes)

    # The gate blocks the promotion and says why; a reachable gate lets it through.
    with pytest.raises(grpc.RpcError) as err:
        registry.Promote(rpb.PromoteRequest(model="topic-bot", version=1, actor="e2e"), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "exact_match" in err.value.details()
    registry.SetGate(
        rpb.SetGateRequest(
            model="topic-bot",
            # A bar the base model does not clear: most held-out documents' topics named exactly.
            gate=[rpb.GateRule(metric="exact_match", comparator=rpb.COMPARATOR_GTE, threshold=0.5)],
            actor="e2e",
        ),
        metadata=md,
    )
    promoted = registry.Promote(rpb.PromoteRequest(model="topic-bot", version=1, actor="e2e"), metadata=md)
    assert promoted.to_version == 1

    # Serving answers with the new adapter, without a restart, differently from the base model.
    serving_pid = platform.pid("serving")
    prompt = next(r["prompt"] for r in train_rows if r["completion"] == "tech")  # seen in training

    def answer(model: str) -> serving_pb2.GenerateResponse:
        return serving.Generate(
            serving_pb2.GenerateRequest(model=model, prompt=prompt, max_tokens=8, temperature=0),
            metadata=md,
            timeout=120,
        )

    tuned = await eventually(lambda: answer("topic-bot"), timeout=120)
    base = answer("")
    assert tuned.model_version == "topic-bot/1"
    assert tuned.text != base.text
    assert platform.pid("serving") == serving_pid

    # A second version (registered by hand, pointing at the same adapter) is promoted, then rolled back.
    manual = registry.CreateVersion(
        rpb.CreateVersionRequest(
            model="topic-bot",
            artifact_uri=finished.adapter_uri,
            base_model=SMOLLM2_NAME,
            adapter=True,
            metrics=dict(finished.metrics),  # the same adapter: the same figures pass the same gate
            description="same adapter, registered by hand",
        ),
        metadata=md,
    )
    assert manual.version == 2
    registry.Promote(rpb.PromoteRequest(model="topic-bot", version=2, actor="e2e"), metadata=md)
    await eventually(lambda: answer("topic-bot").model_version == "topic-bot/2", timeout=60)
    rolled = registry.Rollback(
        rpb.RollbackRequest(model="topic-bot", alias="champion", actor="e2e"), metadata=md
    )
    assert (rolled.from_version, rolled.to_version) == (2, 1)
    await eventually(lambda: answer("topic-bot").model_version == "topic-bot/1", timeout=60)
    assert registry.GetModel(rpb.GetModelRequest(name="topic-bot"), metadata=md).aliases["champion"] == 1
