"""Training data: reading dataset versions, chat formatting, prompt masking, truncation, collation."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmops.core.model_assets import ModelAssetError, smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.training.trainer import data as D


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201 - a transformers tokenizer
    from llmops.training.trainer.models import load_tokenizer

    try:
        path = smollm2_path(PlatformSettings().models_dir)
    except ModelAssetError as exc:
        pytest.skip(str(exc))
    return load_tokenizer(path)


def _write(path: Path, rows: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_sft_example_masks_the_prompt(tokenizer) -> None:  # noqa: ANN001
    e = D.encode(tokenizer, "What is two plus two?", "Four.", max_length=256)
    assert len(e.input_ids) == len(e.labels)
    trained = [t for t, label in zip(e.input_ids, e.labels, strict=True) if label != D.IGNORE_INDEX]
    # Only the answer and its end-of-turn token carry loss.
    assert tokenizer.decode(trained) == "Four." + tokenizer.eos_token
    assert trained == [label for label in e.labels if label != D.IGNORE_INDEX]
    # The masked part is exactly the chat prompt generation starts from.
    n_prompt = e.labels.index(next(label for label in e.labels if label != D.IGNORE_INDEX))
    assert tokenizer.decode(e.input_ids[:n_prompt]) == D.prompt_text(tokenizer, "What is two plus two?")
    assert "<|im_start|>user\nWhat is two plus two?<|im_end|>" in tokenizer.decode(e.input_ids)
    assert all(label == D.IGNORE_INDEX for label in e.labels[:n_prompt])


def test_truncation_keeps_part_of_the_answer(tokenizer) -> None:  # noqa: ANN001
    long_prompt = "word " * 300
    e = D.encode(tokenizer, long_prompt, "The answer is short.", max_length=64)
    assert len(e.input_ids) == 64
    # The prompt lost its beginning, the whole answer (7 tokens or so) is kept.
    assert tokenizer.decode([t for t, label in zip(e.input_ids, e.labels, strict=True) if label != -100]) == (
        "The answer is short." + tokenizer.eos_token
    )
    long_answer = "many words " * 200
    e = D.encode(tokenizer, "Say many words.", long_answer, max_length=96)
    assert len(e.input_ids) == 96
    assert 0 < e.trained_tokens < 96
    # A prompt within half of max_length is not cut when only the answer is long.
    n_prompt = sum(1 for label in e.labels if label == -100)
    assert tokenizer.decode(e.input_ids[:n_prompt]) == D.prompt_text(tokenizer, "Say many words.")


def test_dpo_pairs_and_collation(tokenizer) -> None:  # noqa: ANN001
    rows = [
        {"prompt": "Pick a colour.", "chosen": "Blue.", "rejected": "I will not."},
        {"prompt": "Name a fruit, please.", "chosen": "An apple.", "rejected": "No."},
    ]
    pairs = D.encode_dpo(tokenizer, rows, 128)
    for pair in pairs:
        n = sum(1 for label in pair.chosen.labels if label == -100)
        assert pair.chosen.input_ids[:n] == pair.rejected.input_ids[:n]
    batch = D.DpoCollator(tokenizer.pad_token_id)(pairs)
    assert batch["input_ids"].shape[0] == 4
    # Chosen rows first, then rejected, in the same order.
    assert batch["input_ids"][0, : len(pairs[0].chosen.input_ids)].tolist() == pairs[0].chosen.input_ids
    assert batch["input_ids"][2, : len(pairs[0].rejected.input_ids)].tolist() == pairs[0].rejected.input_ids
    # Padding is masked out of attention and loss.
    width = batch["input_ids"].shape[1]
    short = len(pairs[0].rejected.input_ids)
    assert batch["attention_mask"][2, short:].sum() == 0 and (batch["labels"][2, short:] == -100).all()
    assert width == max(len(p.input_ids) for pair in pairs for p in (pair.chosen, pair.rejected))


def test_read_rows_by_split_and_method(tmp_path: Path) -> None:
    uri = _write(
        tmp_path / "v.parquet",
        [
            {"prompt": "a", "completion": "x", "chosen": "c", "rejected": "r", "split": "train"},
            {"prompt": "b", "completion": "", "chosen": "c", "rejected": "c", "split": "train"},
            {"prompt": "c", "completion": "z", "chosen": "", "rejected": "r", "split": "eval"},
        ],
    )
    assert D.read_rows(uri, "sft_lora", "train") == [{"prompt": "a", "completion": "x"}]
    assert D.read_rows(uri, "sft_lora", "eval") == [{"prompt": "c", "completion": "z"}]
    # Empty answers and pairs with equal answers teach nothing.
    assert D.read_rows(uri, "dpo_lora", None) == [{"prompt": "a", "chosen": "c", "rejected": "r"}]
    assert D.split_counts(uri, "sft_lora") == {"train": 1, "eval": 1}
    assert D.split_counts(f"file://{uri}", "dpo_lora") == {"train": 1, "eval": 0}


def test_missing_columns_and_missing_split(tmp_path: Path) -> None:
    uri = _write(tmp_path / "sft.parquet", [{"prompt": "a", "completion": "x"}])
    with pytest.raises(ValueError, match="chosen, rejected"):
        D.read_rows(uri, "dpo_lora", "train")
    # Without a split column every row is for training.
    assert D.split_counts(uri, "sft_lora") == {"train": 1, "eval": 0}
