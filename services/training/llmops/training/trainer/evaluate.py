"""Evaluating a trained adapter on the dataset's eval split.

Metrics (names as the registry's gates use them):

* ``eval_loss``: the training objective on the eval split (SFT: masked cross-entropy per answer
  token; DPO: the DPO loss against the base model);
* ``perplexity``: ``exp`` of the cross-entropy per answer token of the reference answers (SFT: the
  completion; DPO: the chosen answer);
* ``rouge_l``, ``exact_match``: greedy answers to the first ``max_generate_examples`` eval prompts
  against the reference answers (means over those examples);
* ``judge_win_rate``, ``judge_decided``: an LLM judge compares the new adapter's answer with the
  champion's (another adapter, or the base model) on the same prompts. The pair is shown in swapped
  order on every other example to cancel the judge's position bias; identical answers, abstentions
  and failed calls are undecided. ``judge_win_rate = wins / decided``, absent when nothing was
  decided (``judge_decided = 0``, e.g. when no judge is reachable).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmops.training.trainer import data as D
from llmops.training.trainer.loop import dpo_loss, sequence_logps
from llmops.training.trainer.metrics import exact_match, rouge_l
from llmops.training.trainer.models import load_model, load_tokenizer

log = logging.getLogger(__name__)

Verdict = str | None
# judge(prompt, answer_a, answer_b) -> "A" | "B" | None, sync or async.
Judge = Callable[[str, str, str], Verdict | Awaitable[Verdict]]


class EvaluationCancelled(Exception):
    """``should_stop`` said to stop (the job was cancelled or the service is stopping)."""


@dataclass(frozen=True)
class EvalConfig:
    """Caps and generation settings for one evaluation."""

    max_length: int = 512
    dpo_beta: float = 0.1
    max_loss_examples: int = 256
    max_generate_examples: int = 16
    max_new_tokens: int = 64
    batch_size: int = 8
    judge_timeout_seconds: float = 120.0


def evaluate(
    *,
    base_model_path: str,
    adapter_dir: str,
    dataset_uri: str,
    method: str,
    config: EvalConfig,
    champion_adapter_dir: str | None = None,
    judge: Judge | None = None,
    judge_loop: asyncio.AbstractEventLoop | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Evaluate the adapter in ``adapter_dir`` (see the module docstring).

    Args:
        base_model_path: the base model folder the adapter was trained on.
        adapter_dir: the trained adapter (peft ``save_pretrained`` folder).
        dataset_uri: the dataset version (path or fsspec URL).
        method: "sft_lora" or "dpo_lora".
        config: caps and generation settings.
        champion_adapter_dir: the champion's adapter folder; None: the base model is the champion.
        judge: the pairwise judge; None skips the comparison (``judge_decided`` = 0).
        judge_loop: the event loop an async judge must run on (its gRPC channel belongs to it); None
            runs an async judge with ``asyncio.run``.
        should_stop: polled between batches; True raises :class:`EvaluationCancelled`.

    Returns:
        The metrics; empty when the eval split has no usable example.
    """
    from peft import PeftModel

    rows = D.read_rows(dataset_uri, method, "eval")
    if not rows:
        log.warning("the eval split of %s is empty: no evaluation metrics", dataset_uri)
        return {}
    stop = should_stop or (lambda: False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(base_model_path)
    model = PeftModel.from_pretrained(
        load_model(base_model_path, device), adapter_dir, adapter_name="challenger"
    )
    if champion_adapter_dir:
        model.load_adapter(champion_adapter_dir, adapter_name="champion")
    model.set_adapter("challenger")
    model.eval()

    metrics: dict[str, float] = {"eval_examples": float(len(rows))}
    loss_rows = rows[: config.max_loss_examples]
    metrics.update(_losses(model, tokenizer, loss_rows, method, config, device, stop))

    answer_key = "chosen" if method == "dpo_lora" else "completion"
    gen_rows = rows[: config.max_generate_examples]
    if not gen_rows:
        metrics["judge_decided"] = 0.0
        return metrics
    prompts = [r["prompt"] for r in gen_rows]
    answers = generate(model, tokenizer, prompts, config.max_new_tokens, config.batch_size, device, stop)
    references = [r[answer_key] for r in gen_rows]
    metrics["rouge_l"] = sum(map(rouge_l, answers, references)) / len(answers)
    metrics["exact_match"] = sum(map(exact_match, answers, references)) / len(answers)

    wins = decided = 0
    if judge is not None:
        if champion_adapter_dir:
            model.set_adapter("champion")
            champion = generate(
                model, tokenizer, prompts, config.max_new_tokens, config.batch_size, device, stop
            )
            model.set_adapter("challenger")
        else:
            with model.disable_adapter():
                champion = generate(
                    model, tokenizer, prompts, config.max_new_tokens, config.batch_size, device, stop
                )
        wins, decided = judge_pairs(
            prompts, answers, champion, judge, judge_loop, config.judge_timeout_seconds
        )
    metrics["judge_decided"] = float(decided)
    if decided:
        metrics["judge_win_rate"] = wins / decided
    return metrics


def _losses(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, str]],
    method: str,
    config: EvalConfig,
    device: torch.device,
    stop: Callable[[], bool],
) -> dict[str, float]:
    """eval_loss and perplexity (see the module docstring)."""
    answer_key = "chosen" if method == "dpo_lora" else "completion"
    reference = [D.encode(tokenizer, r["prompt"], r[answer_key], config.max_length) for r in rows]
    ce_sum, ce_tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(reference), config.batch_size):
            if stop():
                raise EvaluationCancelled("evaluation stopped")
            batch = {
                k: v.to(device)
                for k, v in D.pad(reference[i : i + config.batch_size], tokenizer.pad_token_id).items()
            }
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ce_sum -= float(sequence_logps(logits, batch["labels"]).sum())
            ce_tokens += int((batch["labels"][:, 1:] != D.IGNORE_INDEX).sum())
    token_ce = ce_sum / max(ce_tokens, 1)
    out = {"perplexity": math.exp(min(token_ce, 50.0))}
    if method != "dpo_lora":
        out["eval_loss"] = token_ce
        return out
    pairs = D.encode_dpo(tokenizer, rows, config.max_length)
    losses: list[float] = []
    collate = D.DpoCollator(tokenizer.pad_token_id)
    with torch.no_grad():
        for i in range(0, len(pairs), config.batch_size):
            if stop():
                raise EvaluationCancelled("evaluation stopped")
            batch = {k: v.to(device) for k, v in collate(pairs[i : i + config.batch_size]).items()}
            logps = sequence_logps(
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                batch["labels"],
            )
            with model.disable_adapter():
                ref = sequence_logps(
                    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                    batch["labels"],
                )
            half = logps.size(0) // 2
            losses.extend(
                dpo_loss(logps[:half], logps[half:], ref[:half], ref[half:], config.dpo_beta).tolist()
            )
    out["eval_loss"] = sum(losses) / len(losses)
    return out


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Greedy answers to ``prompts`` in the chat format, decoded without special tokens."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    answers: list[str] = []
    for i in range(0, len(prompts), batch_size):
        if should_stop is not None and should_stop():
            raise EvaluationCancelled("evaluation stopped")
        encoded = [
            tokenizer(D.prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"]
            for p in prompts[i : i + batch_size]
        ]
        width = max(len(e) for e in encoded)
        # Left padding: every row's answer starts right after its prompt.
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e) :] = torch.tensor(e, dtype=torch.long)
            mask[row, width - len(e) :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
            )
        answers.extend(tokenizer.batch_decode(out[:, width:], skip_special_tokens=True))
    return [a.strip() for a in answers]


def judge_pairs(
    prompts: Sequence[str],
    challenger: Sequence[str],
    champion: Sequence[str],
    judge: Judge,
    loop: asyncio.AbstractEventLoop | None = None,
    timeout: float = 120.0,
) -> tuple[int, int]:
    """Ask ``judge`` about each (challenger, champion) pair; positions swap on every other example.

    Returns:
        (challenger wins, decided pairs). A judge that raises is not asked again (its remaining pairs
        are undecided): a missing judge must not fail the job.
    """
    wins = decided = 0
    for i, (prompt, new, old) in enumerate(zip(prompts, challenger, champion, strict=True)):
        if new.strip() == old.strip():
            continue
        challenger_is_a = i % 2 == 0
        a, b = (new, old) if challenger_is_a else (old, new)
        try:
            verdict = _ask(judge, loop, timeout, prompt, a, b)
        except Exception as exc:  # noqa: BLE001 - any judge failure only costs the metric
            log.warning("the judge failed (%s); the remaining pairs are undecided", exc)
            break
        if verdict not in ("A", "B"):
            continue
        decided += 1
        wins += (verdict == "A") == challenger_is_a
    return wins, decided


def _ask(judge: Judge, loop: asyncio.AbstractEventLoop | None, timeout: float, *args: str) -> Verdict:
    result = judge(*args)
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Verdict:
        return await result

    if loop is not None:
        return asyncio.run_coroutine_threadsafe(wait(), loop).result(timeout)
    return asyncio.run(wait())
