"""Token counts with the embedding model's own tokenizer (all-MiniLM-L6-v2's WordPiece)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from llmops.core.model_assets import minilm_path


class ModelTokens:
    """Counts and offsets of a text's tokens, special tokens left out, never truncated."""

    def __init__(self, model_dir: Path | None = None) -> None:
        self._tokenizer = Tokenizer.from_file(str((model_dir or minilm_path()) / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> Sequence[tuple[int, int]]:
        return self._tokenizer.encode(text, add_special_tokens=False).offsets
