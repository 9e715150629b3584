"""The ``llmops`` CLI against the real training and registry processes: a model with an impossible gate,
``llmops train`` following one small SFT job to its adapter, the auto-registered version, a promotion
refused by the gate and granted after ``set-gate``, the lineage, a rollback with nothing to go back to,
and the ``jobs`` commands. One platform start and one training job (2 cores: about a minute)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmops.cli.local import LocalPlatform
from llmops.core.model_assets import SMOLLM2_NAME
from llmops.testing.platform import running_platform
from llmops.testing.stand_ins import DatasetVersions, labeling_dataset_versions

pytestmark = pytest.mark.integration

MODEL = "cards-cli"
ENV = {
    "LLMOPS_TRAINING_CHECKPOINT_EVERY": "2",
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


LABELING = DatasetVersions()


def _write_version(platform: LocalPlatform, dataset: str, rows: list[dict[str, str]]) -> str:
    """Write a dataset version where the labeling service puts them, and tell labeling; its id."""
    version_id = uuid.uuid4().hex
    path = platform.data_dir / "artifacts" / "datasets" / dataset / f"{version_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    LABELING.versions[version_id] = path.as_uri()
    return version_id


@pytest.fixture(scope="module")
def labeling_address() -> Iterator[str]:
    with labeling_dataset_versions(LABELING) as address:
        yield address


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, labeling_address: str) -> Iterator[LocalPlatform]:
    env = {**ENV, "LLMOPS_LABELING_ADDRESS": labeling_address}
    with running_platform(tmp_path_factory.mktemp("cli-training"), ["training", "registry"], **env) as p:
        yield p


def _cli(platform: LocalPlatform, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LLMOPS_API_KEY": platform.api_key(),
        "LLMOPS_TRAINING_ADDRESS": platform.address("training"),
        "LLMOPS_REGISTRY_ADDRESS": platform.address("registry"),
        "USER": "cli-tester",
        # Wide enough that no table cell (ids, URIs) is folded onto two lines.
        "COLUMNS": "400",
    }
    return subprocess.run(
        [sys.executable, "-m", "llmops.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Trained:
    job_id: str
    dataset_version: str
    output: str


@pytest.fixture(scope="module")
def trained(platform: LocalPlatform) -> Trained:
    """``registry create-model`` with an impossible gate, then one ``llmops train`` followed to its end."""
    created = _ok(
        _cli(
            platform,
            "registry",
            "create-model",
            MODEL,
            "--base-model",
            SMOLLM2_NAME,
            "--gate",
            "exact_match>=2",
        )
    )
    assert f"model {MODEL}" in created and "gate: exact_match >= 2" in created
    dataset_version = _write_version(platform, "cards", _sft_rows(24))
    result = _cli(
        platform,
        "train",
        "--dataset-version",
        dataset_version,
        "--model",
        MODEL,
        "--method",
        "sft",
        "--learning-rate",
        "2e-3",
        "--batch-size",
        "4",
        "--max-length",
        "64",
        "--max-steps",
        "4",
        "--seed",
        "7",
        "--workers",
        "1",
        "--cpus-per-worker",
        "1",
        "--idempotency-key",
        "cli-cards-1",
        timeout=600,
    )
    output = _ok(result)
    job_id = re.search(r"^job (\S+): ", output, re.MULTILINE)
    assert job_id, output
    return Trained(job_id[1], dataset_version, output)


def test_train_follows_the_job_to_its_adapter(platform: LocalPlatform, trained: Trained) -> None:
    out = trained.output
    assert f"job {trained.job_id}: SUCCEEDED" in out
    adapter = re.search(r"^adapter: (\S+)$", out, re.MULTILINE)
    assert adapter and adapter[1].endswith(f"/adapters/{MODEL}/{trained.job_id}"), out
    assert adapter[1].startswith("file://")
    # The metrics table of the finished job.
    for metric in ("eval_loss", "exact_match", "train_loss"):
        assert metric in out, metric


def test_gate_blocks_then_allows_promotion_and_lineage_names_the_job(
    platform: LocalPlatform, trained: Trained
) -> None:
    # training.completed registers version 1 a moment after the job ends.
    deadline = time.monotonic() + 60
    listing = ""
    while time.monotonic() < deadline:
        listing = _ok(_cli(platform, "registry", "versions", MODEL))
        if re.search(rf"^\s*│?\s*1\s.*READY.*{trained.job_id}", listing, re.MULTILINE):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"version 1 of {MODEL} not READY within 60s:\n{listing}")
    assert trained.dataset_version in listing and "1 version(s)" in listing

    refused = _cli(platform, "registry", "promote", MODEL, "1")
    assert refused.returncode == 1, refused
    assert "not promoted" in refused.stderr and "exact_match" in refused.stderr, refused.stderr

    bad = _cli(platform, "registry", "set-gate", MODEL, "--gate", "eval_loss=>0")
    assert bad.returncode == 2 and "'eval_loss=>0'" in bad.stderr, bad
    gate = _ok(
        _cli(platform, "registry", "set-gate", MODEL, "--gate", "exact_match>=0", "--gate", "eval_loss>0")
    )
    assert "gate: exact_match >= 0, eval_loss > 0" in gate

    promoted = _ok(_cli(platform, "registry", "promote", MODEL, "1", "--reason", "passes the gate"))
    assert f"{MODEL}@champion: none -> 1 (promote by cli-tester: passes the gate)" in promoted
    shown = _ok(_cli(platform, "registry", "show", MODEL, "champion"))
    assert trained.job_id in shown and "READY" in shown and "champion" in shown
    models = _ok(_cli(platform, "registry", "models"))
    assert MODEL in models and "champion=1" in models

    lineage = _ok(_cli(platform, "registry", "lineage", MODEL, "1"))
    for text in (trained.job_id, trained.dataset_version, "training_job", "dataset_version", "trained_on"):
        assert text in lineage, (text, lineage)
    assert "produced" in lineage and f"{MODEL}/1" in lineage

    # One holder so far: a rollback has nowhere to go and says so, leaving the alias where it is.
    rollback = _cli(platform, "registry", "rollback", MODEL, "--reason", "try")
    assert rollback.returncode == 1 and "no earlier holder" in rollback.stderr, rollback
    history = _ok(_cli(platform, "registry", "history", MODEL, "--alias", "champion"))
    assert "promote" in history and "rollback" not in history and "1 change(s)" in history
    # The ungated override it points to instead.
    staged = _ok(_cli(platform, "registry", "set-alias", MODEL, "1", "--alias", "staging"))
    assert f"{MODEL}@staging: none -> 1 (set by cli-tester)" in staged


def test_jobs_commands(platform: LocalPlatform, trained: Trained) -> None:
    listed = _ok(_cli(platform, "jobs", "list", "--model", MODEL))
    assert trained.job_id in listed and "SUCCEEDED" in listed and "4/4" in listed
    assert _ok(_cli(platform, "jobs", "list", "--state", "failed")).strip().endswith("0 job(s)")
    shown = _ok(_cli(platform, "jobs", "show", trained.job_id))
    assert "SUCCEEDED" in shown and "max_steps=4" in shown and trained.dataset_version in shown
    # Following a finished job prints its outcome at once.
    followed = _ok(_cli(platform, "jobs", "follow", trained.job_id))
    assert f"job {trained.job_id}: SUCCEEDED" in followed and "adapter: file://" in followed
    cancel = _cli(platform, "jobs", "cancel", trained.job_id)
    assert cancel.returncode == 1 and "FAILED_PRECONDITION" in cancel.stderr, cancel
    missing = _cli(platform, "jobs", "show", "no-such-job")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
