"""Training joins an existing Ray cluster named by ``LLMOPS_RAY_ADDRESS`` instead of starting its own.

The "cluster" is a Ray head started by this test on 127.0.0.1 (token authentication, as Ray 2.60
requires) in its own process group; the training service connects to it as a driver, runs a job
there, and leaves the cluster running when it stops."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from llmops.cli.local import LocalPlatform
from llmops.contracts.rpc.training.v1 import training_pb2 as pb
from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME
from llmops.core.settings import RaySettings
from llmops.testing.platform import auth, running_platform
from llmops.testing.stand_ins import DatasetVersions, labeling_dataset_versions
from llmops.training.ray_runner import TrainingCluster, short_temp_dir

pytestmark = pytest.mark.integration

ENV = {
    "LLMOPS_TRAINING_EVAL_MAX_GENERATE_EXAMPLES": "2",
    "LLMOPS_TRAINING_EVAL_MAX_NEW_TOKENS": "8",
    "LLMOPS_TRAINING_EVAL_NUM_THREADS": "1",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A running Ray head: (its address, the environment a driver needs to join it)."""
    saved = dict(os.environ)
    root = tmp_path_factory.mktemp("cluster")
    head = TrainingCluster(RaySettings(address=None, num_cpus=2), root, storage_path=root / "results")
    asyncio.run(head.start())
    try:
        address = (head.temp_dir / "ray_current_cluster").read_text().strip()
        join = {k: os.environ[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
        yield address, join
    finally:
        head.stop()
        os.environ.clear()
        os.environ.update(saved)


def test_job_runs_on_the_cluster_and_the_cluster_outlives_the_service(
    cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    address, join = cluster
    versions = DatasetVersions()
    with labeling_dataset_versions(versions) as labeling_address:
        env = {**ENV, **join, "LLMOPS_RAY_ADDRESS": address, "LLMOPS_LABELING_ADDRESS": labeling_address}
        with running_platform(tmp_path, ["training"], **env) as platform:
            _train_on_the_cluster(platform, address, versions)
    # The service has stopped; the cluster it joined still runs.
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2


def _train_on_the_cluster(platform: LocalPlatform, address: str, versions: DatasetVersions) -> None:
    assert f"Ray joined at {address}" in platform.log_tail("training", 200)
    # It did not start a Ray of its own.
    own = str(short_temp_dir(platform.data_dir)).encode()
    assert not any(own in cmdline for cmdline in _command_lines())

    version_id = "v" + os.urandom(8).hex()
    rows = [
        {
            "prompt": f"Colour of card {i}?",
            "completion": f"Card {i} is red.",
            "split": "eval" if i % 4 == 0 else "train",
        }
        for i in range(16)
    ]
    path = platform.data_dir / "artifacts" / "datasets" / "cards" / f"{version_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    versions.versions[version_id] = path.as_uri()
    spec = pb.JobSpec(
        base_model=SMOLLM2_NAME,
        dataset_version_id=version_id,
        method=pb.TRAINING_METHOD_SFT_LORA,
        model_name="on-cluster",
        hyperparameters=pb.Hyperparameters(learning_rate=2e-3, batch_size=2, max_length=48, max_steps=3),
        resources=pb.Resources(num_workers=1, cpus_per_worker=1),
    )
    with grpc.insecure_channel(platform.address("training")) as channel:
        stub = training_pb2_grpc.TrainingServiceStub(channel)
        job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec), metadata=auth(platform), timeout=60)
        progress = list(
            stub.StreamProgress(
                pb.StreamProgressRequest(job_id=job.job_id), metadata=auth(platform), timeout=600
            )
        )
    assert progress[-1].state == pb.JOB_STATE_SUCCEEDED, progress[-1]
    assert progress[-1].step == 3


def _command_lines() -> list[bytes]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_bytes())
        except OSError:
            continue
    return found
