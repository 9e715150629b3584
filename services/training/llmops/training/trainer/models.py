"""Base models: resolving a spec's ``base_model`` to a folder, loading it, and its LoRA-able layers."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from llmops.core.model_assets import SMOLLM2_NAME, ModelAssetError, smollm2_path


class BaseModelNotFound(LookupError):
    """The base model named in a spec is not prepared here or is not a model folder."""


def resolve_base_model(base_model: str, models_dir: Path) -> Path:
    """The folder of ``base_model``: the prepared SmolLM2 for its name, else a Hugging Face model folder.

    Hub ids are not downloaded (the platform never fetches weights at run time): any other value must be
    a folder with a ``config.json``. On a Ray cluster the workers read this path too, so it must be on
    storage every node sees (on one machine a local path is fine).

    Raises:
        BaseModelNotFound: the name is not prepared, or the path is not a model folder.
    """
    if base_model == SMOLLM2_NAME:
        try:
            return smollm2_path(models_dir)
        except ModelAssetError as exc:
            raise BaseModelNotFound(str(exc)) from None
    path = Path(base_model).expanduser()
    if not (path / "config.json").is_file():
        raise BaseModelNotFound(
            f"base model {base_model!r} is neither {SMOLLM2_NAME!r} nor a folder with a config.json "
            "(Hub ids are not downloaded: give the path of a Hugging Face model folder)"
        )
    return path.resolve()


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """The model's tokenizer, with a pad token (the end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer of {path} has no chat template; training formats examples as chat")
    return tokenizer


def load_model(path: str | os.PathLike[str], device: Any = "cpu") -> Any:
    """The causal LM in float32 on ``device`` (mixed precision, where used, comes from autocast)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.to(device)


@functools.lru_cache(maxsize=16)
def linear_module_names(path: str) -> frozenset[str]:
    """Names (last component) of the model's linear layers, found without loading weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return frozenset(
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    )
