"""Training with the real platform processes: the broker and the training service, which starts its own
Ray (loopback only). SFT and DPO LoRA jobs run through Ray Train with one worker on SmolLM2; progress is
streamed over gRPC and published on Kafka, the adapter lands in the artifact store and loads with peft.
Also: an invalid spec, a cancelled job, a job from the ``training.requested`` topic, and a job that
resumes from its checkpoint after the service was stopped (leaving no Ray process behind).
Dataset versions are written under the artifact root as labeling writes them; training learns where
from a stand-in labeling (its GetDatasetVersion), never from labeling's folders.

Kept small for 2 cores: 32 examples, max_length 64, a handful of steps per job."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.events import TrainingRequested
from llmops.contracts.rpc.training.v1 import training_pb2 as pb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.testing.platform import auth, publish_raw, running_platform
from llmops.testing.stand_ins import DatasetVersions, labeling_dataset_versions
from llmops.training.ray_runner import short_temp_dir

pytestmark = pytest.mark.integration

CHECKPOINT_EVERY = 2
ENV = {
    "LLMOPS_TRAINING_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
    "LLMOPS_TRAINING_EVAL_MAX_GENERATE_EXAMPLES": "4",
    "LLMOPS_TRAINING_EVAL_MAX_NEW_TOKENS": "12",
    "LLMOPS_TRAINING_STOP_TIMEOUT_SECONDS": "5",
    # One thread each: two threads on two cores that other processes also use are many times slower.
    "LLMOPS_TRAINING_EVAL_NUM_THREADS": "1",
}
COLORS = ["red", "blue", "green", "amber", "violet", "teal", "coral", "olive"]


def _sft_rows(n: int) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"What colour is card number {i}?",
            "completion": f"Card {i} is {COLORS[i % len(COLORS)]}.",
            "split": "eval" if i % 8 == 0 else "train",
        }
        for i in range(n)
    ]


def _dpo_rows(n: int) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"Name the colour of tile {i}.",
            "chosen": f"Tile {i} is {COLORS[i % len(COLORS)]}.",
            "rejected": "I do not know.",
            "split": "eval" if i % 4 == 0 else "train",
        }
        for i in range(n)
    ]


# One for the module, like the platform: the versions the tests wrote.
LABELING = DatasetVersions()


@pytest.fixture(scope="module")
def labeling_address() -> Iterator[str]:
    with labeling_dataset_versions(LABELING) as address:
        yield address


def _write_version(platform: LocalPlatform, dataset: str, rows: list[dict[str, str]]) -> str:
    """Write a dataset version where the labeling service puts them, and tell labeling; its id."""
    version_id = uuid.uuid4().hex
    path = platform.data_dir / "artifacts" / "datasets" / dataset / f"{version_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    LABELING.versions[version_id] = path.as_uri()
    return version_id


def _hp(**overrides: float) -> pb.Hyperparameters:
    values = {"learning_rate": 2e-3, "batch_size": 4, "max_length": 64, "seed": 7, "max_steps": 8}
    values.update(overrides)
    return pb.Hyperparameters(**values)


def _spec(version_id: str, model_name: str, **kw: object) -> pb.JobSpec:
    base = {
        "base_model": SMOLLM2_NAME,
        "dataset_version_id": version_id,
        "method": pb.TRAINING_METHOD_SFT_LORA,
        "model_name": model_name,
        "hyperparameters": _hp(),
        "resources": pb.Resources(num_workers=1, cpus_per_worker=1),
    }
    base.update(kw)
    return pb.JobSpec(**base)


def _file_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _processes() -> list[tuple[int, int, str, bytes]]:
    """(pid, session id, state, command line) of every process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        out.append((int(entry.name), int(fields[3]), fields[0], cmdline))
    return out


def _left_behind(sessions: set[int]) -> list[str]:
    """Running (non-zombie) processes of ``sessions``."""
    return [
        f"{pid} {cmd[:80]!r}" for pid, sid, state, cmd in _processes() if sid in sessions and state != "Z"
    ]


async def _events(platform: LocalPlatform, topic: str, job_id: str, count: int, timeout: float = 60) -> list:
    """The first ``count`` events of ``job_id`` on ``topic`` (JSON), read from the topic's start."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=platform.bootstrap_servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    value = json.loads(record.value)
                    if value.get("job_id") == job_id:
                        found.append(value)
    finally:
        await consumer.stop()
    assert len(found) >= count, f"expected {count} events of {job_id} on {topic}, got {len(found)}"
    return found


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, labeling_address: str) -> Iterator[LocalPlatform]:
    env = {**ENV, "LLMOPS_LABELING_ADDRESS": labeling_address}
    with running_platform(tmp_path_factory.mktemp("training"), ["training"], **env) as platform:
        yield platform


@pytest.fixture(scope="module")
def stub(platform: LocalPlatform) -> Iterator[training_pb2_grpc.TrainingServiceStub]:
    with grpc.insecure_channel(platform.address("training")) as channel:
        yield training_pb2_grpc.TrainingServiceStub(channel)


def _stream(stub: training_pb2_grpc.TrainingServiceStub, platform: LocalPlatform, job_id: str) -> list:
    return list(
        stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id), metadata=auth(platform), timeout=300)
    )


def test_invalid_specs_are_rejected(
    platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub
) -> None:
    md = auth(platform)
    version_id = _write_version(platform, "cards", _sft_rows(8))

    def code_of(spec: pb.JobSpec) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=md, timeout=60)
        return err.value.code(), err.value.details()

    code, details = code_of(_spec(version_id, "cards", hyperparameters=_hp(lora_rank=-4)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "lora_rank" in details
    code, details = code_of(_spec(version_id, "cards", method=pb.TRAINING_METHOD_UNSPECIFIED))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "method" in details
    code, details = code_of(_spec(version_id, "cards", resources=pb.Resources(num_workers=3)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "CPUs" in details
    code, details = code_of(_spec(version_id, "cards", method=pb.TRAINING_METHOD_DPO_LORA))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "chosen" in details
    code, details = code_of(
        _spec(version_id, "cards", hyperparameters=pb.Hyperparameters(target_modules=["nope_proj"]))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "q_proj" in details
    # A label naming a file outside the artifact root is refused before anything is read.
    code, details = code_of(_spec(version_id, "cards", labels={"dataset_uri": "file:///etc/passwd"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "labels.dataset_uri" in details
    code, details = code_of(_spec("0" * 64, "cards"))
    assert code == grpc.StatusCode.NOT_FOUND and "0" * 64 in details
    code, details = code_of(_spec(version_id, "cards", base_model="/no/such/model"))
    assert code == grpc.StatusCode.NOT_FOUND and "/no/such/model" in details
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(job_id="missing"), metadata=md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_sft_job_end_to_end(
    platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub
) -> None:
    md = auth(platform)
    version_id = _write_version(platform, "cards", _sft_rows(32))
    request = pb.SubmitJobRequest(spec=_spec(version_id, "cards-bot"), idempotency_key="cards-bot-1")
    job = stub.SubmitJob(request, metadata=md, timeout=60)
    assert job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
    assert job.spec.hyperparameters.lora_rank == 8 and job.spec.hyperparameters.max_steps == 8
    # The same idempotency key returns the same job.
    assert stub.SubmitJob(request, metadata=md, timeout=60).job_id == job.job_id

    progress = _stream(stub, platform, job.job_id)
    final = progress[-1]
    assert final.state == pb.JOB_STATE_SUCCEEDED, stub.GetJob(
        pb.GetJobRequest(job_id=job.job_id), metadata=md
    )
    steps = [p.step for p in progress if p.step]
    assert steps == sorted(steps) and final.step == 8 and final.total_steps == 8
    trained = [p for p in progress if p.step]
    assert trained[-1].loss < trained[0].loss
    assert all(p.tokens_per_second > 0 and p.learning_rate > 0 for p in trained)
    assert final.eval_loss > 0

    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=md)
    for name in ("eval_loss", "perplexity", "rouge_l", "exact_match", "judge_decided", "train_loss"):
        assert name in done.metrics, name
    # Serving is not running here: no judge, so nothing decided and no win rate.
    assert done.metrics["judge_decided"] == 0 and "judge_win_rate" not in done.metrics
    assert done.ray_job_id == job.job_id and done.started_at.seconds and done.finished_at.seconds
    assert done.adapter_uri.endswith(f"/adapters/cards-bot/{job.job_id}")

    # The adapter is in the artifact store and loads with peft on the base model.
    folder = Path(done.adapter_uri.removeprefix("file://"))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= _file_names(folder)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2_path(platform.models_dir))
    tuned = PeftModel.from_pretrained(base, str(folder))
    assert any("lora_A" in name for name, _ in tuned.named_parameters())

    progress_events = await _events(platform, topics.TRAINING_PROGRESS, job.job_id, 8)
    assert [e["step"] for e in progress_events[:8]] == list(range(1, 9))
    (completed,) = await _events(platform, topics.TRAINING_COMPLETED, job.job_id, 1)
    assert completed["adapter_uri"] == done.adapter_uri and completed["dataset_version_id"] == version_id
    assert completed["params"]["lora_rank"] == "8" and completed["params"]["num_workers"] == "1"
    assert completed["metrics"]["eval_loss"] == pytest.approx(done.metrics["eval_loss"])


def test_dpo_job(platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub) -> None:
    md = auth(platform)
    version_id = _write_version(platform, "tiles", _dpo_rows(16))
    job = stub.SubmitJob(
        pb.SubmitJobRequest(
            spec=_spec(
                version_id,
                "tiles-bot",
                method=pb.TRAINING_METHOD_DPO_LORA,
                hyperparameters=_hp(max_steps=3, batch_size=2, dpo_beta=0.5, learning_rate=1e-3),
            )
        ),
        metadata=md,
        timeout=60,
    )
    progress = _stream(stub, platform, job.job_id)
    assert progress[-1].state == pb.JOB_STATE_SUCCEEDED and progress[-1].step == 3
    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=md)
    # Before the first update the policy equals the reference: the DPO loss is log(2).
    first = next(p for p in progress if p.step == 1)
    assert first.loss == pytest.approx(0.6931, abs=0.01)
    assert done.spec.method == pb.TRAINING_METHOD_DPO_LORA
    assert {"eval_loss", "perplexity", "rouge_l", "exact_match"} <= set(done.metrics)
    assert Path(done.adapter_uri.removeprefix("file://"), "adapter_model.safetensors").is_file()


async def test_cancel_a_running_job(
    platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub
) -> None:
    md = auth(platform)
    version_id = _write_version(platform, "cards", _sft_rows(32))
    job = stub.SubmitJob(
        pb.SubmitJobRequest(spec=_spec(version_id, "cancel-me", hyperparameters=_hp(max_steps=500))),
        metadata=md,
        timeout=60,
    )
    stream = stub.StreamProgress(pb.StreamProgressRequest(job_id=job.job_id), metadata=md, timeout=300)
    seen = []
    for update in stream:
        seen.append(update)
        if update.step >= 1 and update.state == pb.JOB_STATE_RUNNING:
            cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id, reason="test"), metadata=md)
            assert cancelled.state == pb.JOB_STATE_CANCELLED and cancelled.error == "cancelled: test"
    # The stream ends with the terminal state.
    assert seen[-1].state == pb.JOB_STATE_CANCELLED and seen[-1].step < 500
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    (failed,) = await _events(platform, topics.TRAINING_FAILED, job.job_id, 1)
    assert failed["reason"] == "cancelled: test"
    listed = stub.ListJobs(pb.ListJobsRequest(state=pb.JOB_STATE_CANCELLED), metadata=md)
    assert [j.job_id for j in listed.jobs] == [job.job_id]


async def test_a_job_that_fails_says_why(
    platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub
) -> None:
    """The dataset is removed after the job was accepted: the job fails, on gRPC and on Kafka, with a
    reason that names the missing dataset version."""
    md = auth(platform)
    version_id = _write_version(platform, "cards", _sft_rows(16))
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=_spec(version_id, "lose-data")), metadata=md, timeout=60)
    (platform.data_dir / "artifacts" / "datasets" / "cards" / f"{version_id}.parquet").unlink()
    progress = _stream(stub, platform, job.job_id)
    assert progress[-1].state == pb.JOB_STATE_FAILED
    done = stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=md)
    assert version_id in done.error and not done.adapter_uri, done.error
    (failed,) = await _events(platform, topics.TRAINING_FAILED, job.job_id, 1)
    assert failed["reason"] == done.error


async def test_job_from_training_requested(
    platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub
) -> None:
    md = auth(platform)
    version_id = _write_version(platform, "cards", _sft_rows(32))
    event = TrainingRequested(
        request_key="drift-42",
        base_model=SMOLLM2_NAME,
        dataset_version_id=version_id,
        model_name="from-kafka",
        hyperparameters={"max_steps": 2, "batch_size": 4, "max_length": 64, "learning_rate": 1e-3},
        resources={"num_workers": 1, "cpus_per_worker": 1},
        reason="drift",
    )
    # Delivered twice: the request key makes the second one a no-op.
    await publish_raw(
        platform.bootstrap_servers, topics.TRAINING_REQUESTED, [event.model_dump_json().encode()] * 2
    )

    async def submitted() -> list:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = stub.ListJobs(pb.ListJobsRequest(model_name="from-kafka"), metadata=md).jobs
            if jobs:
                return list(jobs)
            await asyncio.sleep(0.5)
        raise AssertionError("no job from training.requested")

    (job,) = await submitted()
    assert job.idempotency_key == "drift-42" and job.spec.labels["reason"] == "drift"
    progress = _stream(stub, platform, job.job_id)
    assert progress[-1].state == pb.JOB_STATE_SUCCEEDED and progress[-1].step == 2
    assert len(stub.ListJobs(pb.ListJobsRequest(model_name="from-kafka"), metadata=md).jobs) == 1

    # Paging, newest first.
    first = stub.ListJobs(pb.ListJobsRequest(page_size=1), metadata=md)
    assert first.jobs[0].job_id == job.job_id and first.next_page_token
    second = stub.ListJobs(pb.ListJobsRequest(page_size=1, page_token=first.next_page_token), metadata=md)
    assert second.jobs[0].job_id != job.job_id


def test_running_job_resumes_after_restart(
    platform: LocalPlatform, stub: training_pb2_grpc.TrainingServiceStub
) -> None:
    md = auth(platform)
    version_id = _write_version(platform, "cards", _sft_rows(32))
    job = stub.SubmitJob(
        pb.SubmitJobRequest(spec=_spec(version_id, "resume-me", hyperparameters=_hp(max_steps=8))),
        metadata=md,
        timeout=60,
    )
    stream = stub.StreamProgress(pb.StreamProgressRequest(job_id=job.job_id), metadata=md, timeout=300)
    for update in stream:
        if update.step >= CHECKPOINT_EVERY + 1:
            break
    stream.cancel()

    # Stopped as `make down` does (SIGTERM to its process group): nothing of it is left, neither in
    # its session nor in the session of the Ray head it started (Ray's processes all live there).
    pid = platform.pid("training")
    assert pid is not None
    marker = str(short_temp_dir(platform.data_dir)).encode()
    sessions = {pid} | {sid for _, sid, _, cmd in _processes() if marker in cmd}
    assert len(sessions) == 2, sessions
    platform.stop("training")
    deadline = time.monotonic() + 10
    while _left_behind(sessions) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _left_behind(sessions) == []
    # It put the job back in the queue (or left it RUNNING for the next start to requeue).
    assert "resume" in platform.log_tail("training", 40)

    platform.start_services(["training"])
    with grpc.insecure_channel(platform.address("training")) as channel:
        fresh = training_pb2_grpc.TrainingServiceStub(channel)
        progress = _stream(fresh, platform, job.job_id)
        done = fresh.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=md)
    assert progress[-1].state == pb.JOB_STATE_SUCCEEDED and progress[-1].step == 8
    # The second attempt started from a checkpoint, not from step 1.
    resumed_steps = [p.step for p in progress[1:] if p.step]
    assert resumed_steps and min(resumed_steps) > CHECKPOINT_EVERY
    assert done.ray_job_id == f"{job.job_id}-r2"
