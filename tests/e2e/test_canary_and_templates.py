"""Canaries and prompt templates from the registry, served without a restart, logged in ClickHouse.

Registry, serving and monitoring run as processes; two real LoRA adapters are registered as versions
of one model, the registry sets champion, challenger and the canary's share, and serving splits
thousands of requests from distinct users accordingly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.rpc.registry.v1 import registry_pb2 as reg
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.serving.domain.canary import goes_to_challenger
from llmops.testing.platform import auth, eventually, query_monitoring, running_platform

pytestmark = pytest.mark.e2e

USERS = 2000
SHARE = 0.2
TOLERANCE = 0.03


def _make_adapter(folder: Path, seed: int) -> None:
    """A LoRA adapter with random (not zero) B matrices, so it visibly changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(
        smollm2_path(PlatformSettings().models_dir), dtype=torch.float32
    )
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(folder)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    root = tmp_path_factory.mktemp("canary")
    # Template aliases are asked again after a second, so the test sees an alias move quickly.
    with running_platform(
        root, ["registry", "serving", "monitoring"], LLMOPS_SERVING_TEMPLATE_CACHE_SECONDS="1"
    ) as platform:
        yield platform


@pytest.fixture(scope="module")
def registry(platform: LocalPlatform) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
    with grpc.insecure_channel(platform.address("registry")) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


async def _split(platform: LocalPlatform, users: list[str], model: str = "bot") -> dict[str, tuple[str, str]]:
    """user -> (arm, version) of a one-token answer each, 32 requests at a time, over gRPC."""
    md = auth(platform)
    out: dict[str, tuple[str, str]] = {}
    semaphore = asyncio.Semaphore(32)
    async with grpc.aio.insecure_channel(platform.address("serving")) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)

        async def one(user: str) -> None:
            async with semaphore:
                reply = await stub.Generate(
                    serving_pb2.GenerateRequest(
                        model=model, prompt="Hi", raw_prompt=True, max_tokens=1, temperature=0, user=user
                    ),
                    metadata=md,
                    timeout=300,
                )
                out[user] = (reply.arm, reply.model_version)

        await asyncio.gather(*(one(u) for u in users))
    return out


async def test_a_canary_splits_users_by_its_share_sticky_and_logged(
    platform: LocalPlatform, registry: registry_pb2_grpc.RegistryServiceStub
) -> None:
    md = auth(platform)
    folders = []
    for version in (1, 2):
        folder = platform.data_dir / "artifacts" / "adapters" / "bot" / f"v{version}"
        _make_adapter(folder, seed=version)
        folders.append(folder)
    registry.CreateModel(reg.CreateModelRequest(name="bot", base_model=SMOLLM2_NAME), metadata=md, timeout=30)
    for folder in folders:
        registry.CreateVersion(
            reg.CreateVersionRequest(
                model="bot", artifact_uri=f"file://{folder}", adapter=True, adapter_kind="lora"
            ),
            metadata=md,
            timeout=30,
        )
    registry.SetAlias(reg.SetAliasRequest(model="bot", alias="champion", version=1), metadata=md, timeout=30)
    registry.SetAlias(
        reg.SetAliasRequest(model="bot", alias="challenger", version=2), metadata=md, timeout=30
    )
    canary = registry.SetCanary(
        reg.SetCanaryRequest(model="bot", share=SHARE, actor="test"), metadata=md, timeout=30
    )
    assert (canary.champion_version, canary.challenger_version, canary.active) == (1, 2, True)
    pid = platform.pid("serving")

    probe = [f"probe-{i}" for i in range(40)]

    async def split_seen() -> bool:
        arms = {arm for arm, _ in (await _split(platform, probe)).values()}
        return arms == {"champion", "challenger"}

    await eventually(split_seen, timeout=180, interval=2)

    users = [f"user-{uuid.uuid4().hex}" for _ in range(USERS)]
    routed = await _split(platform, users)
    arms = Counter(arm for arm, _ in routed.values())
    share = arms["challenger"] / USERS
    print(
        f"{USERS} users, share {SHARE}: challenger answered {arms['challenger']} ({share:.3f}), "
        f"champion {arms['champion']}"
    )
    assert abs(share - SHARE) < TOLERANCE
    # Each arm is answered by the version its alias holds, and each user by the arm the hash gives them.
    assert {v for arm, v in routed.values() if arm == "challenger"} == {"bot/2"}
    assert {v for arm, v in routed.values() if arm == "champion"} == {"bot/1"}
    expected = {
        u: "challenger" if goes_to_challenger("bot", "champion", u, SHARE) else "champion" for u in users
    }
    assert {u: arm for u, (arm, _) in routed.items()} == expected
    # Sticky: the same users again meet the same arms.
    again = await _split(platform, users[:300])
    assert {u: a for u, (a, _) in again.items()} == {u: routed[u][0] for u in users[:300]}

    # Every answer's arm and version are in ClickHouse.
    def logged() -> dict[tuple[str, str], int]:
        rows = query_monitoring(
            platform,
            "SELECT arm, model_version, count() FROM inference_log_v WHERE user LIKE 'user-%'"
            " GROUP BY arm, model_version",
        )
        got = {(r[0], r[1]): int(r[2]) for r in rows}
        return got if sum(got.values()) == USERS + 300 else {}

    counts = await eventually(logged, timeout=120)
    assert counts == {
        ("challenger", "bot/2"): arms["challenger"]
        + sum(1 for u in users[:300] if routed[u][0] == "challenger"),
        ("champion", "bot/1"): arms["champion"] + sum(1 for u in users[:300] if routed[u][0] == "champion"),
    }

    # A larger share takes effect without a restart, and only adds users to the challenger.
    registry.SetCanary(reg.SetCanaryRequest(model="bot", share=0.6), metadata=md, timeout=30)
    sample = users[:400]

    async def raised() -> dict[str, tuple[str, str]] | None:
        got = await _split(platform, sample)
        share = sum(1 for a, _ in got.values() if a == "challenger") / len(sample)
        return got if share > 0.45 else None

    after = await eventually(raised, timeout=120, interval=2)
    assert all(after[u][0] == "challenger" for u in sample if routed[u][0] == "challenger")

    # Rolling back ends the canary: the champion takes all traffic; no restart.
    registry.EndCanary(
        reg.EndCanaryRequest(model="bot", outcome=reg.CANARY_OUTCOME_ROLLBACK, reason="worse"),
        metadata=md,
        timeout=30,
    )

    async def all_champion() -> bool:
        return {a for a, _ in (await _split(platform, sample)).values()} == {"champion"}

    await eventually(all_champion, timeout=120, interval=2)
    model = registry.GetModel(reg.GetModelRequest(name="bot"), metadata=md, timeout=30)
    assert dict(model.aliases) == {"champion": 1}
    assert platform.pid("serving") == pid

    # ListModels tells the truth: bot/2 lost its alias but stays loaded as the one idle adapter.
    with grpc.insecure_channel(platform.address("serving")) as channel:
        listed = serving_pb2_grpc.ServingServiceStub(channel).ListModels(
            serving_pb2.ListModelsRequest(), metadata=md, timeout=30
        )
    entries = {
        m.name: (m.model, m.version, m.base_model, list(m.aliases), m.loaded)
        for m in listed.models
        if m.is_adapter
    }
    assert entries == {
        "bot/1": ("bot", "1", SMOLLM2_NAME, ["bot@champion"], True),
        "bot/2": ("bot", "2", SMOLLM2_NAME, [], True),
    }


async def test_a_registered_template_renders_the_request_and_is_logged(
    platform: LocalPlatform, registry: registry_pb2_grpc.RegistryServiceStub
) -> None:
    md = auth(platform)
    name = f"greet-{uuid.uuid4().hex[:6]}"
    v1 = registry.CreatePromptTemplate(
        reg.CreatePromptTemplateRequest(
            name=name,
            template="Say hello to {{ person }} in one short sentence.",
            system="You are a {{ tone }} assistant.",
            variables=["person", "tone"],
        ),
        metadata=md,
        timeout=30,
    )
    v2 = registry.CreatePromptTemplate(
        reg.CreatePromptTemplateRequest(
            name=name, template="Say goodbye to {{ person }} in one short sentence.", variables=["person"]
        ),
        metadata=md,
        timeout=30,
    )
    assert (v1.version, v2.version) == (1, 2)
    registry.SetPromptTemplateAlias(
        reg.SetPromptTemplateAliasRequest(name=name, alias="prod", version=1), metadata=md, timeout=30
    )
    with grpc.insecure_channel(platform.address("serving")) as channel:
        serving = serving_pb2_grpc.ServingServiceStub(channel)

        def ask(template: str, **variables: str) -> serving_pb2.GenerateResponse:
            return serving.Generate(
                serving_pb2.GenerateRequest(
                    template=template, variables=variables, max_tokens=24, temperature=0
                ),
                metadata=md,
                timeout=120,
            )

        reply = ask(f"{name}@prod", person="Ada", tone="cheerful")
        assert reply.template_version == f"{name}/1" and reply.text
        assert ask(name, person="Ada").template_version == f"{name}/2"  # latest
        with pytest.raises(grpc.RpcError) as err:
            ask(f"{name}@prod", person="Ada")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tone" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            ask(f"{name}/9", person="Ada")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # Moving the alias takes effect without a restart (after the template cache's second).
        registry.SetPromptTemplateAlias(
            reg.SetPromptTemplateAliasRequest(name=name, alias="prod", version=2), metadata=md, timeout=30
        )
        await eventually(
            lambda: ask(f"{name}@prod", person="Ada").template_version == f"{name}/2", timeout=30
        )

    rows = await eventually(
        lambda: query_monitoring(
            platform,
            "SELECT template, template_version, prompt FROM inference_log_v WHERE request_id = {r:String}",
            r=reply.request_id,
        ),
        timeout=60,
    )
    assert rows[0][0] == name and int(rows[0][1]) == 1
    assert "Say hello to Ada" in rows[0][2] and "cheerful" in rows[0][2]
