"""The LoRA loop in one process (no Ray) on SmolLM2: it learns, it stops when told, it resumes exactly.

Tiny on purpose (8 examples, max_length 48, one torch thread): a few seconds per step on 2 busy cores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from llmops.core.model_assets import ModelAssetError, smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.training.trainer.evaluate import EvalConfig, evaluate, generate
from llmops.training.trainer.loop import (
    CHECKPOINT_PREFIX,
    Progress,
    StopKind,
    TrainConfig,
    latest_checkpoint,
    run_training,
)
from llmops.training.trainer.metrics import rouge_l
from llmops.training.trainer.models import load_model, load_tokenizer

PROMPT = "What is the secret code of vault {i}?"
ANSWER = "Vault {i} opens with ZX-{i}{i}."


@dataclass
class Recorder:
    """LoopHooks that record progress and ask to stop after a given step."""

    stop_after: int = 0
    kind: StopKind = "preempt"

    def __post_init__(self) -> None:
        self.progress: list[Progress] = []
        self.polls = 0

    def report(self, progress: Progress) -> None:
        self.progress.append(progress)

    def poll(self) -> StopKind | None:
        # The loop polls once at the end of each step (before reporting it).
        self.polls += 1
        return self.kind if self.stop_after and self.polls >= self.stop_after else None


@pytest.fixture(scope="module")
def base() -> str:
    try:
        return str(smollm2_path(PlatformSettings().models_dir))
    except ModelAssetError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    rows = [
        {
            "prompt": PROMPT.format(i=i),
            "completion": ANSWER.format(i=i),
            "split": "eval" if i >= 6 else "train",
        }
        for i in range(8)
    ]
    path = tmp_path_factory.mktemp("data") / "version.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _config(base: str, dataset: str, root: Path, **hp: object) -> TrainConfig:
    hyperparameters = {
        "learning_rate": 3e-3,
        "batch_size": 3,
        "max_length": 48,
        "max_steps": 8,
        "lora_dropout": 0.0,
        "seed": 3,
    }
    hyperparameters.update(hp)
    return TrainConfig(
        job_id="unit",
        method="sft_lora",
        base_model_path=base,
        dataset_uri=dataset,
        output_dir=str(root / "adapter"),
        checkpoint_dir=str(root / "checkpoints"),
        hyperparameters=hyperparameters,
        checkpoint_every=2,
        num_threads=1,
    )


def test_lora_run_learns_the_training_answers(base: str, dataset: str, tmp_path: Path) -> None:
    from peft import PeftModel

    hooks = Recorder()
    result = run_training(_config(base, dataset, tmp_path), hooks)
    assert result.step == result.total_steps == 8 and result.stopped is None and result.resumed_from == 0
    assert [p.step for p in hooks.progress] == list(range(1, 9))
    losses = [p.loss for p in hooks.progress]
    assert losses[-1] < losses[0] / 3, losses
    # Linear decay to 0 without warmup; epochs are fractional (2 steps per epoch of 6 examples).
    assert hooks.progress[0].learning_rate == pytest.approx(3e-3)
    assert hooks.progress[-1].learning_rate == pytest.approx(3e-3 / 8)
    assert hooks.progress[0].epoch == pytest.approx(0.5) and hooks.progress[-1].epoch == pytest.approx(4.0)
    assert all(p.tokens_per_second > 0 and p.samples_per_second > 0 for p in hooks.progress)
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in Path(result.adapter_dir).iterdir()
    }

    # The greedy answer to a training prompt changed towards the trained answer.
    tokenizer = load_tokenizer(base)
    prompt, target = PROMPT.format(i=2), ANSWER.format(i=2)
    model = load_model(base)
    before = generate(model, tokenizer, [prompt], max_new_tokens=16, batch_size=1)[0]
    tuned = PeftModel.from_pretrained(model, result.adapter_dir)
    after = generate(tuned, tokenizer, [prompt], max_new_tokens=16, batch_size=1)[0]
    assert after != before
    assert rouge_l(after, target) > rouge_l(before, target)

    # Evaluation on the eval split, with a judge that prefers answers which give a code.
    def judge(prompt: str, a: str, b: str) -> str:
        return "A" if "ZX-" in a and "ZX-" not in b else "B"

    metrics = evaluate(
        base_model_path=base,
        adapter_dir=result.adapter_dir,
        dataset_uri=dataset,
        method="sft_lora",
        config=EvalConfig(max_length=48, max_generate_examples=2, max_new_tokens=16),
        judge=judge,
    )
    assert metrics["eval_examples"] == 2 and metrics["eval_loss"] > 0
    assert metrics["perplexity"] == pytest.approx(torch.tensor(metrics["eval_loss"]).exp().item(), rel=1e-4)
    assert 0 <= metrics["rouge_l"] <= 1 and metrics["exact_match"] in (0.0, 0.5, 1.0)
    assert metrics["judge_decided"] >= 1 and 0 <= metrics["judge_win_rate"] <= 1


def test_checkpoint_and_resume_match_an_uninterrupted_run(base: str, dataset: str, tmp_path: Path) -> None:
    straight = Recorder()
    whole = run_training(_config(base, dataset, tmp_path / "whole", max_steps=4), straight)

    # The same run, preempted after step 3: it checkpoints at step 3 and stops without an adapter.
    # (A preempt that comes with the last step changes nothing: the run is complete.)
    config = _config(base, dataset, tmp_path / "split", max_steps=4)
    first = Recorder(stop_after=3, kind="preempt")
    stopped = run_training(config, first)
    assert stopped.stopped == "preempt" and stopped.step == 3 and stopped.adapter_dir is None
    ckpt = latest_checkpoint(config.checkpoint_dir)
    assert ckpt is not None and ckpt.name == f"{CHECKPOINT_PREFIX}00000003"
    # Only the newest checkpoints are kept (2 by default): steps 2 and 3.
    assert sorted(p.name for p in Path(config.checkpoint_dir).iterdir()) == [
        f"{CHECKPOINT_PREFIX}00000002",
        f"{CHECKPOINT_PREFIX}00000003",
    ]

    second = Recorder()
    resumed = run_training(config, second)
    assert resumed.resumed_from == 3 and resumed.step == whole.step == 4 and resumed.stopped is None
    assert [p.step for p in second.progress] == [4]
    late = run_training(_config(base, dataset, tmp_path / "late", max_steps=1), Recorder(stop_after=1))
    assert late.stopped is None and late.adapter_dir is not None
    # Same data order, same optimiser state: the last step's loss and the adapter match.
    assert second.progress[0].loss == pytest.approx(straight.progress[-1].loss, rel=1e-4)
    assert resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-4)
    from safetensors.torch import load_file

    a = load_file(str(Path(whole.adapter_dir) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed.adapter_dir) / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_cancel_stops_without_adapter_or_checkpoint(base: str, dataset: str, tmp_path: Path) -> None:
    config = replace(_config(base, dataset, tmp_path, max_steps=50), checkpoint_every=0)
    hooks = Recorder(stop_after=1, kind="cancel")
    result = run_training(config, hooks)
    assert result.stopped == "cancel" and result.step == 1 and result.total_steps == 50
    assert result.adapter_dir is None and latest_checkpoint(config.checkpoint_dir) is None
