"""Serving follows the registry: a models.alias_changed event makes serving load the version's LoRA
adapter from the artifact store and answer with it, without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.events import ModelAliasChanged
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.testing.platform import auth, eventually, publish_raw, running_platform

pytestmark = pytest.mark.integration

PROMPT = "Name a fruit."


def _make_adapter(folder: Path) -> None:
    """A LoRA adapter with random (not zero) B matrices, so it visibly changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(
        smollm2_path(PlatformSettings().models_dir), dtype=torch.float32
    )
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(folder)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("follow"), ["serving"]) as platform:
        yield platform


def _generate(platform: LocalPlatform, model: str) -> serving_pb2.GenerateResponse:
    with grpc.insecure_channel(platform.address("serving")) as channel:
        return serving_pb2_grpc.ServingServiceStub(channel).Generate(
            serving_pb2.GenerateRequest(model=model, prompt=PROMPT, max_tokens=16, temperature=0),
            metadata=auth(platform),
            timeout=120,
        )


async def test_an_alias_change_loads_the_adapter_without_a_restart(platform: LocalPlatform) -> None:
    adapter = platform.data_dir / "artifacts" / "adapters" / "bot" / "job-1"
    _make_adapter(adapter)
    with pytest.raises(grpc.RpcError) as err:
        _generate(platform, "bot")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "unknown model 'bot'" in err.value.details()
    base = _generate(platform, "")
    pid = platform.pid("serving")

    event = ModelAliasChanged(
        model="bot",
        alias="champion",
        version=1,
        artifact_uri=f"file://{adapter}",
        base_model=SMOLLM2_NAME,
        actor="test",
        reason="promoted",
    )
    await publish_raw(platform.bootstrap_servers, ModelAliasChanged.topic, [event.model_dump_json().encode()])

    champion = await eventually(lambda: _generate(platform, "bot"), timeout=120)
    assert champion.model == "bot" and champion.model_version == "bot/1"
    assert champion.text != base.text
    assert _generate(platform, "bot/1").text == champion.text
    assert _generate(platform, "bot@champion").text == champion.text
    assert _generate(platform, "").text == base.text
    assert platform.pid("serving") == pid  # same process: no restart

    with grpc.insecure_channel(platform.address("serving")) as channel:
        models = (
            serving_pb2_grpc.ServingServiceStub(channel)
            .ListModels(serving_pb2.ListModelsRequest(), metadata=auth(platform))
            .models
        )
    adapters = [m for m in models if m.is_adapter]
    assert [(m.name, list(m.aliases)) for m in adapters] == [("bot/1", ["bot@champion"])]

    # An adapter for another base model is refused, and the alias keeps its old holder.
    wrong = event.model_copy(
        update={"version": 2, "base_model": "Llama-70B", "event_id": event.event_id.__class__(int=7)}
    )
    await publish_raw(platform.bootstrap_servers, ModelAliasChanged.topic, [wrong.model_dump_json().encode()])
    with pytest.raises(grpc.RpcError) as err:
        _generate(platform, "bot@challenger")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # A version no alias named is looked up in the registry, which this test does not run.
    with pytest.raises(grpc.RpcError) as err:
        _generate(platform, "bot/2")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "registry" in err.value.details()
    assert _generate(platform, "bot").model_version == "bot/1"

    # Removing the alias takes the name away again.
    removed = event.model_copy(update={"version": None, "event_id": event.event_id.__class__(int=8)})
    await publish_raw(
        platform.bootstrap_servers, ModelAliasChanged.topic, [removed.model_dump_json().encode()]
    )

    def gone() -> bool:
        try:
            _generate(platform, "bot")
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
        return False

    await eventually(gone, timeout=30)


async def test_promotions_do_not_pile_adapters_up_in_the_engine(platform: LocalPlatform) -> None:
    """Ten promotions: the engine keeps the champion's adapter and at most two idle ones (the default
    LLMOPS_SERVING_MAX_IDLE_ADAPTERS), and ListModels says which are loaded."""
    adapter = platform.data_dir / "artifacts" / "adapters" / "bot" / "job-1"
    if not (adapter / "adapter_config.json").exists():
        _make_adapter(adapter)
    events = [
        ModelAliasChanged(
            model="churn",
            alias="champion",
            version=v,
            artifact_uri=f"file://{adapter}",
            base_model=SMOLLM2_NAME,
            reason=f"promotion {v}",
        )
        .model_dump_json()
        .encode()
        for v in range(1, 11)
    ]
    await publish_raw(platform.bootstrap_servers, ModelAliasChanged.topic, events)

    def listed() -> dict[str, tuple[list[str], bool]]:
        with grpc.insecure_channel(platform.address("serving")) as channel:
            models = (
                serving_pb2_grpc.ServingServiceStub(channel)
                .ListModels(serving_pb2.ListModelsRequest(), metadata=auth(platform), timeout=30)
                .models
            )
        return {m.name: (list(m.aliases), m.loaded) for m in models if m.model == "churn"}

    entries = await eventually(
        lambda: (got := listed()) and got.get("churn/10", ([], False))[0] and got, timeout=120
    )
    assert entries["churn/10"] == (["churn@champion"], True)
    loaded = sorted(name for name, (_, is_loaded) in entries.items() if is_loaded)
    # The champion and the two most recently idle; the older versions were unloaded as promotions came.
    assert loaded == ["churn/10", "churn/8", "churn/9"]
    assert _generate(platform, "churn").model_version == "churn/10"
