"""Canary routing: the challenger's share of users, stickiness, and adapters unloaded when idle."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from llmops.contracts.events import ModelAliasChanged, ModelCanaryChanged
from llmops.core.admission import InFlightLimit
from llmops.core.errors import ResourceExhausted
from llmops.serving.deployments import ModelRouter
from llmops.serving.domain.canary import goes_to_challenger
from llmops.serving.routing import AliasTable

BASE = "SmolLM2-135M-Instruct"
USERS = [f"user-{i}" for i in range(5000)]


@pytest.mark.parametrize("share", [0.05, 0.1, 0.3, 0.5])
def test_the_challenger_gets_its_share_of_users(share: float) -> None:
    got = sum(goes_to_challenger("bot", "champion", u, share) for u in USERS) / len(USERS)
    print(f"share {share}: challenger got {got:.4f} of {len(USERS)} users")
    # Binomial standard deviation at 5,000 users is at most 0.0071; 0.025 is over three of them.
    assert abs(got - share) < 0.025


def test_one_user_always_meets_the_same_arm_and_a_larger_share_only_adds_users() -> None:
    at_10 = {u for u in USERS if goes_to_challenger("bot", "champion", u, 0.1)}
    for _ in range(3):
        assert {u for u in USERS if goes_to_challenger("bot", "champion", u, 0.1)} == at_10
    at_30 = {u for u in USERS if goes_to_challenger("bot", "champion", u, 0.3)}
    assert at_10 < at_30
    # Another model's canary splits users independently.
    other = {u for u in USERS if goes_to_challenger("other", "champion", u, 0.1)}
    assert len(other & at_10) < len(at_10) / 2


def test_requests_without_a_user_are_split_one_by_one() -> None:
    rng = random.Random(7)
    got = sum(goes_to_challenger("bot", "champion", "", 0.2, rng.random) for _ in range(5000)) / 5000
    assert abs(got - 0.2) < 0.025
    assert not goes_to_challenger("bot", "champion", "u", 0.0)
    assert goes_to_challenger("bot", "champion", "u", 1.0)


class _Engine:
    """The adapter half of TextEngine, in memory (the real engine is exercised in the integration tests)."""

    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}
        self.is_running = True

    async def load_adapter(self, name: str, path: Path) -> str:
        self.adapters[name] = str(path)
        return name

    async def unload_adapter(self, name: str) -> bool:
        return self.adapters.pop(name, None) is not None

    def adapter(self, name: str) -> str | None:
        return self.adapters.get(name)


def _adapter(tmp_path: Path, version: int) -> str:
    folder = tmp_path / f"v{version}"
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    return f"file://{folder}"


def _alias(tmp_path: Path, alias: str, version: int | None) -> ModelAliasChanged:
    uri = _adapter(tmp_path, version) if version else ""
    return ModelAliasChanged(model="bot", alias=alias, version=version, artifact_uri=uri, base_model=BASE)


async def test_a_canary_splits_an_alias_and_ends_without_a_restart(tmp_path: Path) -> None:
    router = ModelRouter(_Engine(), AliasTable(tmp_path / "a.sqlite"), BASE, tmp_path / "cache")  # type: ignore[arg-type]
    await router.on_alias_changed(_alias(tmp_path, "champion", 1))
    await router.on_alias_changed(_alias(tmp_path, "challenger", 2))
    await router.on_canary_changed(
        ModelCanaryChanged(model="bot", alias="champion", challenger_alias="challenger", share=0.25)
    )
    routes = [(await router.resolve("bot", u))[0] for u in USERS[:2000]]
    challenger = [r for r in routes if r.arm == "challenger"]
    assert {r.deployment.version for r in challenger} == {2}  # type: ignore[union-attr]
    assert {r.deployment.version for r in routes if r.arm == "champion"} == {1}  # type: ignore[union-attr]
    assert abs(len(challenger) / len(routes) - 0.25) < 0.03
    # Asking for an arm by name is not split.
    assert {(await router.resolve("bot@challenger", u))[0].arm for u in USERS[:50]} == {"challenger"}
    await router.on_canary_changed(
        ModelCanaryChanged(
            model="bot", alias="champion", challenger_alias="challenger", share=0, active=False
        )
    )
    assert {(await router.resolve("bot", u))[0].arm for u in USERS[:500]} == {"champion"}


async def test_adapters_no_alias_names_are_unloaded_beyond_the_idle_bound(tmp_path: Path) -> None:
    engine = _Engine()
    router = ModelRouter(
        engine, AliasTable(tmp_path / "a.sqlite"), BASE, tmp_path / "cache", max_idle_adapters=1
    )  # type: ignore[arg-type]
    for version in range(1, 6):  # five promotions
        await router.on_alias_changed(_alias(tmp_path, "champion", version))
    # The holder of the alias, and the one most recently idle.
    assert sorted(engine.adapters) == ["bot/4", "bot/5"]
    route, _ = await router.resolve("bot")
    async with router.using(route):
        await router.on_alias_changed(_alias(tmp_path, "champion", 6))
        await router.on_alias_changed(_alias(tmp_path, "champion", 7))
        # bot/5 answers a request: it stays loaded past the bound, whatever its age.
        assert sorted(engine.adapters) == ["bot/5", "bot/6", "bot/7"]
    # Once the request is done, bot/5 is the most recently used idle adapter: bot/6 goes.
    await router.unload_idle()
    assert sorted(engine.adapters) == ["bot/5", "bot/7"]


def test_in_flight_limit_refuses_at_once_and_frees_its_slot() -> None:
    limit = InFlightLimit("serving", "requests", 2, retry_after_seconds=3)
    with limit.slot(), limit.slot():
        with pytest.raises(ResourceExhausted, match="2 requests in flight") as refused:
            with limit.slot():
                pass
        assert refused.value.retry_after_seconds == 3
    with limit.slot():
        assert limit.in_flight == 1
    assert limit.in_flight == 0
