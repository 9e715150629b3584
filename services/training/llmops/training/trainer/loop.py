"""The LoRA training loop: one function for a plain process and for each Ray Train worker.

:func:`run_training` fine-tunes a peft LoRA adapter with AdamW and a linear schedule (with warmup),
gradient accumulation, epochs or a step cap, and a seed. SFT minimises the masked cross-entropy of
the answers; DPO minimises ``-logsigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))`` where the
reference is the same model with its adapter disabled.

With ``distributed=True`` it runs inside a Ray Train worker: the model goes through
``ray.train.torch.prepare_model`` (DDP over gloo on CPU, NCCL on GPU, as TorchTrainer set up the
process group), each rank reads its shard through a ``DistributedSampler``, and the stop flag and the
step's statistics are all-reduced so every rank stops at the same step.

Checkpoints (adapter, optimizer, scheduler, step, RNG state) go to ``checkpoint_dir`` every
``checkpoint_every`` steps, written by rank 0 into a temporary folder and renamed into place; a run
that finds one there resumes from the newest, at the same position in the same data order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F

from llmops.training.spec import ALL_LINEAR, Hyperparameters
from llmops.training.trainer import data as D
from llmops.training.trainer.models import load_model, load_tokenizer

StopKind = Literal["cancel", "preempt"]
CHECKPOINT_PREFIX = "step-"
TRAINER_STATE = "trainer_state.pt"
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a worker needs, as plain data (it travels to Ray workers).

    On a Ray cluster every path here must be readable (and ``checkpoint_dir`` / ``output_dir``
    writable) from every node: a shared mount or the same local paths on one machine.
    """

    job_id: str
    method: str
    base_model_path: str
    dataset_uri: str
    output_dir: str
    checkpoint_dir: str
    hyperparameters: dict[str, Any]
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    # 0 leaves torch's default; a Ray worker sets it to its CPU share.
    num_threads: int = 0


@dataclass(frozen=True)
class Progress:
    """One optimiser step, as rank 0 reports it (figures are over all ranks)."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_per_second: float
    samples_per_second: float
    timestamp: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LoopResult:
    """How a run ended. ``adapter_dir`` is set when it finished all its steps (on rank 0)."""

    step: int
    total_steps: int
    stopped: StopKind | None
    train_loss: float
    tokens_per_second: float
    resumed_from: int
    adapter_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LoopHooks(Protocol):
    """How the loop talks to whoever runs it."""

    def report(self, progress: Progress) -> None:
        """Called on rank 0 after every optimiser step."""

    def poll(self) -> StopKind | None:
        """Called on rank 0 after every step: "cancel" (stop, no adapter), "preempt" (checkpoint, stop)."""


class NoHooks:
    """Hooks that report nowhere and never stop (plain runs and benchmarks)."""

    def report(self, progress: Progress) -> None:
        pass

    def poll(self) -> StopKind | None:
        return None


@dataclass
class _State:
    """What carries over a resume besides the weights and the optimiser."""

    step: int = 0
    loss_sum: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    rng: dict[str, Any] = field(default_factory=dict)


# --- losses -------------------------------------------------------------------------------------------


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (labels != -100), next-token aligned."""
    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    count = (targets != D.IGNORE_INDEX).sum()
    total = F.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)),
        targets.reshape(-1),
        ignore_index=D.IGNORE_INDEX,
        reduction="sum",
    )
    return total / count.clamp(min=1)


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the log-probabilities of the answer tokens, one value per row."""
    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != D.IGNORE_INDEX
    picked = torch.gather(shifted.log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair DPO loss: ``-logsigmoid(beta * ((pc - rc) - (pr - rr)))``."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def batch_loss(model: Any, batch: dict[str, torch.Tensor], method: str, beta: float) -> torch.Tensor:
    """The training objective of one (micro-)batch; DPO batches hold chosen rows, then rejected."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    if method != "dpo_lora":
        return sft_loss(out.logits, batch["labels"])
    logps = sequence_logps(out.logits, batch["labels"])
    with torch.no_grad(), unwrap(model).disable_adapter():
        ref = unwrap(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        ref_logps = sequence_logps(ref.logits, batch["labels"])
    half = logps.size(0) // 2
    return dpo_loss(logps[:half], logps[half:], ref_logps[:half], ref_logps[half:], beta).mean()


def unwrap(model: Any) -> Any:
    """The peft model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def lora_config(hp: Hyperparameters) -> Any:
    from peft import LoraConfig

    targets: str | list[str] = ALL_LINEAR if ALL_LINEAR in hp.target_modules else list(hp.target_modules)
    return LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


# --- checkpoints --------------------------------------------------------------------------------------


def latest_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder (``step-00000012``), or None."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if (p / TRAINER_STATE).is_file()]
    return max(done, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), default=None)


def _save_checkpoint(cfg: TrainConfig, model: Any, optimizer: Any, scheduler: Any, state: _State) -> Path:
    root = Path(cfg.checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{state.step:08d}"
    tmp = root / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    unwrap(model).save_pretrained(tmp)
    state.rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state.rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "state": vars(state)},
        tmp / TRAINER_STATE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    olds = sorted(
        (p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p != final),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)),
    )
    for old in olds[: max(0, len(olds) - (cfg.keep_checkpoints - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> _State:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(unwrap(model), load_file(str(path / "adapter_model.safetensors")))
    saved = torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    state = _State(**saved["state"])
    if state.rng:
        torch.set_rng_state(state.rng["torch"])
        random.setstate(state.rng["python"])
        if "cuda" in state.rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state.rng["cuda"])
    return state


# --- the loop -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Topology:
    rank: int
    world: int
    device: torch.device


def _topology(distributed: bool) -> _Topology:
    if not distributed:
        return _Topology(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    return _Topology(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())


def _steps(
    loader: Any, sampler: Any, steps_per_epoch: int, accumulation: int, start: int
) -> Iterator[tuple[int, list[dict[str, torch.Tensor]]]]:
    """(epoch, micro-batches) for each optimiser step from step ``start`` on, epochs repeating."""
    step = start
    while True:
        epoch, within = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        chunk: list[dict[str, torch.Tensor]] = []
        batches = iter(loader)
        # Resuming mid-epoch: the sampler gives the same order, so skip what was already trained on.
        for _ in range(within * accumulation):
            next(batches)
        for batch in batches:
            chunk.append(batch)
            if len(chunk) == accumulation:
                yield epoch, chunk
                chunk = []
                step += 1
        if chunk:
            # The epoch's last step takes the micro-batches that are left.
            yield epoch, chunk
            step += 1


def run_training(cfg: TrainConfig, hooks: LoopHooks, *, distributed: bool = False) -> LoopResult:
    """Fine-tune a LoRA adapter on the dataset's train split (see the module docstring).

    Returns:
        The step reached and why it stopped; on rank 0 of a run that finished its steps, the adapter
        saved with ``save_pretrained`` in ``cfg.output_dir``.

    Raises:
        ValueError: the train split has no usable example, or a setting does not fit the model.
    """
    from peft import get_peft_model
    from torch.utils.data import DataLoader, DistributedSampler
    from transformers import get_linear_schedule_with_warmup

    hp = Hyperparameters(**cfg.hyperparameters)
    topo = _topology(distributed)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    random.seed(hp.seed)
    # The same seed on every rank gives the same LoRA initialisation (DDP also broadcasts rank 0's).
    torch.manual_seed(hp.seed)

    tokenizer = load_tokenizer(cfg.base_model_path)
    rows = D.read_rows(cfg.dataset_uri, cfg.method, "train")
    if not rows:
        raise ValueError(f"the train split of {cfg.dataset_uri} has no usable {cfg.method} example")
    if cfg.method == "dpo_lora":
        examples: list[Any] = D.encode_dpo(tokenizer, rows, hp.max_length)
        collate: Any = D.DpoCollator(tokenizer.pad_token_id)
    else:
        examples = D.encode_sft(tokenizer, rows, hp.max_length)
        collate = D.SftCollator(tokenizer.pad_token_id)

    model = get_peft_model(load_model(cfg.base_model_path, topo.device), lora_config(hp))
    if distributed:
        import ray.train.torch

        model = ray.train.torch.prepare_model(model)
    sampler = DistributedSampler(
        examples, num_replicas=topo.world, rank=topo.rank, shuffle=True, seed=hp.seed, drop_last=False
    )
    # Its own generator, so creating an iterator does not draw from the global RNG (which dropout
    # uses): a resumed run then draws the same dropout masks as an uninterrupted one.
    loader = DataLoader(
        examples,
        batch_size=hp.batch_size,
        sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(hp.seed),
    )
    steps_per_epoch = math.ceil(len(loader) / hp.gradient_accumulation_steps)
    total = hp.max_steps or hp.epochs * steps_per_epoch
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hp.learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(hp.warmup_ratio * total), total)

    state = _State()
    if (ckpt := latest_checkpoint(cfg.checkpoint_dir)) is not None:
        state = _load_checkpoint(ckpt, model, optimizer, scheduler)
    resumed_from = state.step
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if topo.device.type == "cuda" and torch.cuda.is_bf16_supported()
        else contextlib.nullcontext()
    )
    stopped: StopKind | None = None
    model.train()
    steps = _steps(loader, sampler, steps_per_epoch, hp.gradient_accumulation_steps, state.step)
    while state.step < total and stopped is None:
        _, chunk = next(steps)
        started = time.perf_counter()
        loss_value = 0.0
        tokens = samples = 0
        for i, batch in enumerate(chunk):
            batch = {k: v.to(topo.device) for k, v in batch.items()}
            last = i == len(chunk) - 1
            # Gradients are all-reduced once per optimiser step, on its last micro-batch.
            sync = contextlib.nullcontext() if last or topo.world == 1 else model.no_sync()
            with sync:
                with autocast:
                    loss = batch_loss(model, batch, cfg.method, hp.dpo_beta) / len(chunk)
                loss.backward()
            loss_value += loss.item()
            tokens += int(batch["attention_mask"].sum())
            samples += batch["input_ids"].size(0) // (2 if cfg.method == "dpo_lora" else 1)
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        request = hooks.poll() if topo.rank == 0 else None
        # One all-reduce per step: the loss, the throughput and rank 0's stop request.
        stats = torch.tensor(
            [loss_value, tokens, samples, request == "cancel", request == "preempt"],
            dtype=torch.float64,
            device=topo.device,
        )
        if topo.world > 1:
            torch.distributed.all_reduce(stats)
        mean_loss = float(stats[0]) / topo.world
        elapsed = time.perf_counter() - started
        state.step += 1
        state.loss_sum += mean_loss
        state.tokens += int(stats[1])
        state.seconds += elapsed
        if topo.rank == 0:
            hooks.report(
                Progress(
                    step=state.step,
                    total_steps=total,
                    epoch=state.step / steps_per_epoch,
                    loss=mean_loss,
                    learning_rate=learning_rate,
                    tokens_per_second=float(stats[1]) / elapsed,
                    samples_per_second=float(stats[2]) / elapsed,
                    timestamp=time.time(),
                )
            )
        if stats[3] > 0:
            stopped = "cancel"
        elif stats[4] > 0:
            stopped = "preempt"
        periodic = cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0
        if topo.rank == 0 and stopped != "cancel" and state.step < total and (periodic or stopped):
            _save_checkpoint(cfg, model, optimizer, scheduler, state)

    if stopped == "preempt" and state.step >= total:
        stopped = None  # the request came with the last step: the run is complete
    adapter_dir = None
    if stopped is None and topo.rank == 0:
        out = Path(cfg.output_dir)
        shutil.rmtree(out, ignore_errors=True)
        unwrap(model).save_pretrained(out)
        (out / "llmops-training.json").write_text(
            json.dumps({"job_id": cfg.job_id, "method": cfg.method, "steps": state.step}, indent=2) + "\n"
        )
        adapter_dir = str(out)
    steps_done = max(state.step, 1)
    return LoopResult(
        step=state.step,
        total_steps=total,
        stopped=stopped,
        train_loss=state.loss_sum / steps_done if state.step else float("nan"),
        tokens_per_second=state.tokens / state.seconds if state.seconds else 0.0,
        resumed_from=resumed_from,
        adapter_dir=adapter_dir,
    )
