"""Dataset versions as training examples: reading the Parquet file, chat formatting, masking, padding.

A dataset version (written by the labeling service) is one Parquet file with a ``split`` column
(``train`` / ``eval``) and, per method:

* SFT: ``prompt``, ``completion``;
* DPO: ``prompt``, ``chosen``, ``rejected``.

Each example becomes the model's chat format (user: prompt, assistant: completion). The prompt part
(system header, user turn and the assistant header) is masked with -100 in the labels, so the loss is
only on the answer and its end-of-turn token. Prompt and answer are tokenised separately and
concatenated, so the prompt tokens are exactly what generation sees at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow.parquet as pq
import torch

IGNORE_INDEX = -100
SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Encoded:
    """One tokenised sequence: ids and labels (-100 where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair: the same prompt with the chosen and with the rejected answer."""

    chosen: Encoded
    rejected: Encoded


def columns_for(method: str) -> tuple[str, ...]:
    """The columns ``method`` ("sft_lora" or "dpo_lora") reads."""
    return DPO_COLUMNS if method == "dpo_lora" else SFT_COLUMNS


def read_rows(uri: str, method: str, split: str | None) -> list[dict[str, str]]:
    """The usable rows of the version at ``uri`` (path or fsspec URL) in ``split`` (None: all).

    A file without a ``split`` column counts as all-train. Rows with an empty answer (or, for DPO, a
    pair whose answers are equal) teach nothing and are left out.

    Raises:
        ValueError: a column the method needs is missing.
    """
    return [
        {k: v for k, v in row.items() if k != "split"}
        for row in _usable_rows(uri, method)
        if split is None or row["split"] == split
    ]


def split_counts(uri: str, method: str) -> dict[str, int]:
    """How many usable rows each split holds: ``{"train": n, "eval": m}``."""
    counts = {"train": 0, "eval": 0}
    for row in _usable_rows(uri, method):
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    return counts


def _usable_rows(uri: str, method: str) -> list[dict[str, str]]:
    needed = columns_for(method)
    with fsspec.open(uri, "rb") as f:
        names = set(pq.read_schema(f).names)
        missing = [c for c in needed if c not in names]
        if missing:
            raise ValueError(
                f"dataset {uri} has no column(s) {', '.join(missing)}; {method} needs {', '.join(needed)}"
            )
        f.seek(0)
        wanted = [*needed, "split"] if "split" in names else list(needed)
        table = pq.read_table(f, columns=wanted)
    rows: list[dict[str, str]] = []
    for row in table.to_pylist():
        clean = {c: row.get(c) or "" for c in needed}
        if method == "dpo_lora":
            if not clean["chosen"].strip() or not clean["rejected"].strip():
                continue
            if clean["chosen"] == clean["rejected"]:
                continue
        elif not clean["completion"].strip():
            continue
        clean["split"] = row.get("split") or "train"
        rows.append(clean)
    return rows


def prompt_text(tokenizer: Any, prompt: str) -> str:
    """The prompt in the model's chat format, up to and including the assistant header."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def answer_text(tokenizer: Any, prompt: str, answer: str) -> str:
    """What the chat format puts after :func:`prompt_text` for ``answer`` (the answer and its end token)."""
    head = prompt_text(tokenizer, prompt)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tokenize=False
    )
    if not full.startswith(head):
        # A template that renders the assistant turn differently from its generation prompt: train
        # on the answer followed by the end-of-sequence token, which is what generation must emit.
        return answer + (tokenizer.eos_token or "")
    tail = full[len(head) :]
    eos = tokenizer.eos_token
    if eos and (cut := tail.rfind(eos)) >= 0:
        # Drop what follows the end-of-turn token (a newline): generation stops at the token.
        tail = tail[: cut + len(eos)]
    return tail


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode(tokenizer: Any, prompt: str, answer: str, max_length: int) -> Encoded:
    """Tokenise one (prompt, answer) pair with the prompt masked, truncated to ``max_length`` tokens.

    When the pair is too long, the prompt keeps its last tokens (at most half of ``max_length`` when the
    answer needs the room) and the answer is cut at the end, so an example never loses its whole answer
    to a long prompt.
    """
    head = _ids(tokenizer, prompt_text(tokenizer, prompt))
    tail = _ids(tokenizer, answer_text(tokenizer, prompt, answer))
    if len(head) + len(tail) > max_length:
        keep_head = min(len(head), max(max_length - len(tail), max_length // 2))
        head = head[len(head) - keep_head :]
        tail = tail[: max_length - len(head)]
    return Encoded(head + tail, [IGNORE_INDEX] * len(head) + tail)


def encode_sft(tokenizer: Any, rows: Sequence[dict[str, str]], max_length: int) -> list[Encoded]:
    """SFT examples: (prompt, completion)."""
    return [encode(tokenizer, r["prompt"], r["completion"], max_length) for r in rows]


def encode_dpo(tokenizer: Any, rows: Sequence[dict[str, str]], max_length: int) -> list[PreferencePair]:
    """DPO pairs: (prompt, chosen) and (prompt, rejected), tokenised the same way as SFT."""
    return [
        PreferencePair(
            encode(tokenizer, r["prompt"], r["chosen"], max_length),
            encode(tokenizer, r["prompt"], r["rejected"], max_length),
        )
        for r in rows
    ]


def pad(sequences: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence: input_ids, attention_mask and labels (-100 on padding)."""
    width = max(len(s.input_ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        n = len(s.input_ids)
        ids[i, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(s.labels, dtype=torch.long)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class SftCollator:
    """DataLoader collate function for SFT batches."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        return pad(batch, self.pad_id)


class DpoCollator:
    """DataLoader collate function for DPO: chosen rows first, then rejected, in one padded batch.

    One batch means one forward pass per step, which DDP needs (two forwards before one backward
    would make DDP reduce the gradients twice).
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[PreferencePair]) -> dict[str, torch.Tensor]:
        return pad([p.chosen for p in batch] + [p.rejected for p in batch], self.pad_id)
