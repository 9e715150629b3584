"""Training: what Ray Train costs on top of the plain LoRA loop it runs.

The same SFT LoRA loop (``llmops.training.trainer.loop.run_training``; fixed data, fixed steps, batch
8, max_length 128, every example exactly 128 tokens) runs in this process with transformers + peft
(the baseline), then through Ray ``TorchTrainer`` as the training service runs it (a local Ray head
started by this process, progress through the control actor, the stop flag polled every step), and
through the training service itself (``SubmitJob`` over gRPC to the service process, joined to the
same Ray head, progress read back with ``StreamProgress``): one worker with the same CPUs as the
baseline, then two workers (gloo DDP) with one CPU each, through the service. The configurations
alternate, so a machine that gets busier or quieter during the run does not favour one. Throughput
is taken in steady state (after the first ``WARMUP`` steps, from step timestamps, so per-step
overhead counts); the one-off start of each run (Ray workers, model load) is printed separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq

from llmops.contracts.rpc.training.v1 import training_pb2 as pb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.core.settings import PlatformSettings, RaySettings
from llmops.testing.platform import auth, running_platform
from llmops.training.ray_runner import TrainingCluster
from llmops.training.spec import Resources
from llmops.training.trainer.loop import Progress, TrainConfig, run_training

BATCH = 8
MAX_LENGTH = 128
STEPS = 10
WARMUP = 2
ROUNDS = 2
CPUS = min(2, os.cpu_count() or 1)


@dataclass
class Run:
    tokens_per_s: float
    wall_s: float
    startup_s: float


class Recorder:
    """LoopHooks that keep each step's progress."""

    def __init__(self) -> None:
        self.progress: list[Progress] = []

    def report(self, progress: Progress) -> None:
        self.progress.append(progress)

    def poll(self) -> None:
        return None


def _dataset(folder: Path) -> str:
    # Long prompts and answers: truncation makes every example exactly MAX_LENGTH tokens.
    filler = " ".join(f"item{i} is stored on shelf {i % 7} in room {i % 5}." for i in range(40))
    rows = [
        {"prompt": f"Record {n}: {filler}", "completion": f"Summary {n}: {filler}", "split": "train"}
        for n in range(BATCH * 4)
    ]
    path = folder / "bench.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _config(base: str, dataset: str, root: Path, name: str) -> TrainConfig:
    return TrainConfig(
        job_id=name,
        method="sft_lora",
        base_model_path=base,
        dataset_uri=dataset,
        output_dir=str(root / name / "adapter"),
        checkpoint_dir=str(root / name / "checkpoints"),
        hyperparameters={
            "batch_size": BATCH,
            "max_length": MAX_LENGTH,
            "max_steps": STEPS,
            "learning_rate": 1e-4,
            "seed": 1,
        },
        checkpoint_every=0,
        num_threads=CPUS,
    )


def _steady(progress: list[dict[str, Any]] | list[Progress], tokens_per_step: int) -> float:
    stamps = [p["timestamp"] if isinstance(p, dict) else p.timestamp for p in progress]
    assert len(stamps) == STEPS, f"expected {STEPS} progress reports, got {len(stamps)}"
    return tokens_per_step * (STEPS - WARMUP) / (stamps[-1] - stamps[WARMUP - 1])


def _plain(base: str, dataset: str, root: Path, name: str) -> Run:
    hooks = Recorder()
    started_wall = time.time()
    started = time.perf_counter()
    run_training(_config(base, dataset, root, name), hooks)
    wall = time.perf_counter() - started
    return Run(_steady(hooks.progress, BATCH * MAX_LENGTH), wall, hooks.progress[0].timestamp - started_wall)


async def _ray(
    cluster: TrainingCluster, base: str, dataset: str, root: Path, name: str, resources: Resources
) -> Run:
    progress: list[dict[str, Any]] = []

    async def collect(p: dict[str, Any]) -> None:
        progress.append(p)

    started_wall = time.time()
    started = time.perf_counter()
    outcome = await cluster.run(name, name, _config(base, dataset, root, name), resources, collect)
    wall = time.perf_counter() - started
    if outcome.error:
        raise RuntimeError(f"the Ray run {name} failed: {outcome.error}")
    tokens_per_step = BATCH * MAX_LENGTH * resources.num_workers
    return Run(_steady(progress, tokens_per_step), wall, progress[0]["timestamp"] - started_wall)


def _service(platform: Any, dataset: str, name: str, resources: Resources) -> Run:
    """The job submitted to the training service over gRPC; progress read back with StreamProgress."""
    spec = pb.JobSpec(
        base_model=SMOLLM2_NAME,
        dataset_version_id=name,
        method=pb.TRAINING_METHOD_SFT_LORA,
        model_name=name,
        hyperparameters=pb.Hyperparameters(
            batch_size=BATCH, max_length=MAX_LENGTH, max_steps=STEPS, learning_rate=1e-4, seed=1
        ),
        resources=pb.Resources(num_workers=resources.num_workers, cpus_per_worker=resources.cpus_per_worker),
        labels={"dataset_uri": dataset},
    )
    md = auth(platform)
    started_wall = time.time()
    started = time.perf_counter()
    with grpc.insecure_channel(platform.address("training")) as channel:
        stub = training_pb2_grpc.TrainingServiceStub(channel)
        job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=md, timeout=60)
        updates = list(stub.StreamProgress(pb.StreamProgressRequest(job_id=job.job_id), metadata=md))
    if updates[-1].state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"the service job {name} ended {pb.JobState.Name(updates[-1].state)}")
    # One report per step (the last may repeat with the final state); the wall time includes the
    # evaluation after training.
    by_step = {u.step: u.timestamp.ToMicroseconds() / 1e6 for u in updates if u.step}
    steps = [{"timestamp": by_step[step]} for step in sorted(by_step)]
    wall = time.perf_counter() - started
    tokens_per_step = BATCH * MAX_LENGTH * resources.num_workers
    return Run(_steady(steps, tokens_per_step), wall, steps[0]["timestamp"] - started_wall)


async def _measure(base: str, dataset: str, root: Path) -> dict[str, list[Run]]:
    cluster = TrainingCluster(
        RaySettings(num_cpus=CPUS), root / "data", storage_path=root / "ray_results", object_store_mb=128
    )
    started = time.perf_counter()
    await cluster.start()
    print(f"local Ray head up in {time.perf_counter() - started:.1f}s", flush=True)
    runs: dict[str, list[Run]] = {"plain": [], "ray1": [], "svc1": [], "svc2": []}
    # The service joins this Ray head, with the token the head was started with.
    join = {
        "LLMOPS_RAY_ADDRESS": (cluster.temp_dir / "ray_current_cluster").read_text().strip(),
        "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
        "RAY_AUTH_TOKEN_PATH": os.environ["RAY_AUTH_TOKEN_PATH"],
        "LLMOPS_TRAINING_CHECKPOINT_EVERY": "0",
        "LLMOPS_TRAINING_EVAL_MAX_GENERATE_EXAMPLES": "0",
    }
    try:
        with contextlib.ExitStack() as stack:
            platform = stack.enter_context(running_platform(root / "platform", ["training"], **join))
            # The service reads only artifacts under its artifact root: the same file, copied there.
            served = platform.data_dir / "artifacts" / "bench" / "bench.parquet"
            served.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dataset, served)
            one = Resources(num_workers=1, cpus_per_worker=CPUS)
            for i in range(ROUNDS):
                runs["plain"].append(await asyncio.to_thread(_plain, base, dataset, root, f"plain-{i}"))
                _show("plain", runs["plain"][-1])
                runs["ray1"].append(await _ray(cluster, base, dataset, root, f"ray1-{i}", one))
                _show("ray1", runs["ray1"][-1])
                svc1 = await asyncio.to_thread(_service, platform, str(served), f"svc1-{i}", one)
                runs["svc1"].append(svc1)
                _show("svc1", runs["svc1"][-1])
            two = Resources(num_workers=2, cpus_per_worker=max(1, CPUS // 2))
            runs["svc2"].append(await asyncio.to_thread(_service, platform, str(served), "svc2", two))
            _show("svc2", runs["svc2"][-1])
    finally:
        await asyncio.to_thread(cluster.stop)
    return runs


def _show(name: str, run: Run) -> None:
    print(
        f"  {name:5s} {run.tokens_per_s:7.1f} tokens/s steady, wall {run.wall_s:5.1f}s, "
        f"first step after {run.startup_s:4.1f}s",
        flush=True,
    )


def run() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = str(smollm2_path(PlatformSettings().models_dir))
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        dataset = _dataset(root)
        print(
            f"SFT LoRA (r=8, all linear layers) on SmolLM2-135M: batch {BATCH}, max_length {MAX_LENGTH} "
            f"(every example {MAX_LENGTH} tokens), {STEPS} steps, steady state after {WARMUP}; "
            f"{CPUS} CPU(s), {ROUNDS} alternating rounds",
            flush=True,
        )
        runs = asyncio.run(_measure(base, dataset, root))
    plain = statistics.median(r.tokens_per_s for r in runs["plain"])
    ray1 = statistics.median(r.tokens_per_s for r in runs["ray1"])
    svc1 = statistics.median(r.tokens_per_s for r in runs["svc1"])
    svc2 = runs["svc2"][0].tokens_per_s

    def goal(value: float) -> str:
        return (
            f"ratio {value / plain:.3f} ({'within' if value >= 0.85 * plain else 'NOT within'} the 15% goal)"
        )

    rows = [
        (f"plain transformers+peft, 1 process x {CPUS} threads", plain, "baseline"),
        (f"Ray TorchTrainer in this process, 1 worker x {CPUS} CPUs", ray1, goal(ray1)),
        (f"training service (SubmitJob) on Ray, 1 worker x {CPUS} CPUs", svc1, goal(svc1)),
        (
            f"training service on Ray, 2 workers x {max(1, CPUS // 2)} CPU (gloo DDP)",
            svc2,
            f"ratio {svc2 / plain:.3f} (global batch {2 * BATCH})",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:7.1f} tokens/s  {note}")
    start_plain = statistics.median(r.startup_s for r in runs["plain"])
    start_ray = statistics.median(r.startup_s for r in runs["ray1"])
    start_svc = statistics.median(r.startup_s for r in runs["svc1"])
    print(
        f"time to the first step: plain {start_plain:.1f}s (model load), Ray 1 worker {start_ray:.1f}s, "
        f"service {start_svc:.1f}s (validation, worker start, process group, model load): a fixed cost "
        "per job"
    )
