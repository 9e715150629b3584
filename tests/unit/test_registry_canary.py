"""Canaries: SetCanary / GetCanary / EndCanary in the store, through the gRPC servicer and from the CLI,
with the models.canary_changed and models.alias_changed events each change queues (and none for a
refused change), the gated promotion at the end, and DeleteAlias of a canary's aliases."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from llmops.cli.local import free_port
from llmops.cli.main import app
from llmops.cli.registry_commands import canary_text
from llmops.contracts import topics
from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.core.grpc_server import GrpcServer
from llmops.core.settings import AuthSettings
from llmops.registry.domain.errors import (
    FailedPrecondition,
    GateFailed,
    InvalidArgument,
    NotFound,
    VersionNotReady,
)
from llmops.registry.domain.gates import parse_gate
from llmops.registry.domain.models import AliasOperation, CanaryOutcome, VersionSpec, VersionStatus
from llmops.registry.grpc_server import RegistryServicer
from llmops.registry.registry import Registry
from llmops.registry.store import SqlRegistryStore

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
SET, PROMOTE, DELETE = AliasOperation.SET, AliasOperation.PROMOTE, AliasOperation.DELETE


def _fill(store: SqlRegistryStore) -> None:
    """bot (gate eval_accuracy>=0.8): v1 0.85, v2 0.9, v3 0.7 (fails the gate); champion=1, challenger=2."""
    store.create_model("bot", base_model="smollm2", gate=parse_gate(["eval_accuracy>=0.8"]), now=T0)
    for accuracy in (0.85, 0.9, 0.7):
        store.register_version(
            VersionSpec("bot", f"file:///a/{accuracy}", metrics={"eval_accuracy": accuracy}), now=T0
        )
    store.move_alias("bot", "champion", 1, operation=SET, now=T0)
    store.move_alias("bot", "challenger", 2, operation=SET, now=T0)
    store.outbox.remove([e.id for e in store.outbox.pending()])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlRegistryStore]:
    s = SqlRegistryStore(f"sqlite:///{tmp_path}/registry.sqlite")
    _fill(s)
    yield s
    s.close()


def _events(store: SqlRegistryStore) -> list[tuple[str, dict[str, Any]]]:
    """The queued events as (topic, payload), oldest first."""
    return [(e.topic, json.loads(e.payload)) for e in store.outbox.pending()]


def _canary_events(store: SqlRegistryStore) -> list[dict[str, Any]]:
    return [e for t, e in _events(store) if t == topics.MODELS_CANARY_CHANGED]


def _history(store: SqlRegistryStore) -> list[tuple[str, AliasOperation, int, int]]:
    return [(c.alias, c.operation, c.from_version, c.to_version) for c in store.alias_history("bot").items]


# --- starting and changing a canary ------------------------------------------------------------


def test_set_canary_writes_the_split_and_announces_it(store: SqlRegistryStore) -> None:
    canary = store.set_canary("bot", share=0.1, actor="ml-lead", reason="try v2", now=T0)
    assert (canary.alias, canary.challenger_alias, canary.share) == ("champion", "challenger", 0.1)
    assert (canary.champion_version, canary.challenger_version, canary.active, canary.outcome) == (
        1,
        2,
        True,
        None,
    )
    assert store.get_canary("bot") == canary
    ((topic, event),) = _events(store)
    assert topic == "llmops.models.canary_changed.v1"
    assert {k: event[k] for k in ("model", "alias", "challenger_alias", "share", "active", "outcome")} == {
        "model": "bot",
        "alias": "champion",
        "challenger_alias": "challenger",
        "share": 0.1,
        "active": True,
        "outcome": "",
    }
    assert (event["champion_version"], event["challenger_version"], event["actor"], event["reason"]) == (
        1,
        2,
        "ml-lead",
        "try v2",
    )
    assert event["producer"] == "registry"


def test_changing_the_share_announces_again_and_the_same_share_changes_nothing(
    store: SqlRegistryStore,
) -> None:
    store.set_canary("bot", share=0.1, now=T0)
    later = T0 + dt.timedelta(hours=1)
    raised = store.set_canary("bot", "champion", "challenger", share=0.5, actor="ml-lead", now=later)
    assert (raised.share, raised.updated_at, raised.actor) == (0.5, later, "ml-lead")
    again = store.set_canary("bot", share=0.5, actor="someone-else", now=later + dt.timedelta(hours=1))
    assert again == raised
    assert [e["share"] for e in _canary_events(store)] == [0.1, 0.5]
    assert store.get_canary("bot").share == 0.5


@pytest.mark.parametrize("share", [-0.1, 1.5, math.nan, math.inf])
def test_a_share_outside_0_to_1_is_refused_naming_share(store: SqlRegistryStore, share: float) -> None:
    with pytest.raises(InvalidArgument, match="^share must be between 0 and 1"):
        store.set_canary("bot", share=share)
    assert store.outbox.pending() == []
    with pytest.raises(NotFound):
        store.get_canary("bot")


def test_the_ends_of_the_share_range_are_allowed(store: SqlRegistryStore) -> None:
    assert store.set_canary("bot", share=0.0).share == 0.0
    assert store.set_canary("bot", share=1.0).share == 1.0


def test_both_aliases_must_exist_and_hold_ready_versions(store: SqlRegistryStore) -> None:
    with pytest.raises(FailedPrecondition, match="model 'bot' has no alias 'canary-b'"):
        store.set_canary("bot", challenger_alias="canary-b", share=0.1)
    with pytest.raises(FailedPrecondition, match="model 'bot' has no alias 'stable'"):
        store.set_canary("bot", alias="stable", share=0.1)
    store.set_version_status("bot", 2, VersionStatus.ARCHIVED)
    with pytest.raises(VersionNotReady, match="bot version 2 is archived"):
        store.set_canary("bot", share=0.1)
    with pytest.raises(InvalidArgument, match="alias and challenger_alias are both 'champion'"):
        store.set_canary("bot", challenger_alias="champion", share=0.1)
    with pytest.raises(InvalidArgument, match="challenger_alias 'a b' is not a valid alias"):
        store.set_canary("bot", challenger_alias="a b", share=0.1)
    with pytest.raises(NotFound, match="model 'ghost' not found"):
        store.set_canary("ghost", share=0.1)
    assert store.outbox.pending() == []


def test_an_alias_is_in_one_canary_at_most(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "stable", 1, operation=SET)
    store.move_alias("bot", "next", 2, operation=SET)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    store.set_canary("bot", share=0.1)
    # Another challenger for the running canary: named, not silently swapped.
    with pytest.raises(FailedPrecondition, match="already runs against 'challenger'"):
        store.set_canary("bot", challenger_alias="next", share=0.2)
    # The running canary's challenger cannot be challenged or challenge elsewhere.
    with pytest.raises(FailedPrecondition, match="alias 'challenger' of bot already takes part"):
        store.set_canary("bot", alias="challenger", challenger_alias="next", share=0.2)
    with pytest.raises(FailedPrecondition, match="alias 'challenger' of bot already takes part"):
        store.set_canary("bot", alias="stable", challenger_alias="challenger", share=0.2)
    with pytest.raises(FailedPrecondition, match="alias 'champion' of bot already takes part"):
        store.set_canary("bot", alias="stable", challenger_alias="champion", share=0.2)
    # Aliases outside it can run their own.
    assert store.set_canary("bot", alias="stable", challenger_alias="next", share=0.3).share == 0.3
    assert len(_canary_events(store)) == 2


def test_get_canary_is_not_found_when_none_runs_and_reads_the_versions_now(store: SqlRegistryStore) -> None:
    with pytest.raises(NotFound, match="no canary runs on bot@champion"):
        store.get_canary("bot")
    store.set_canary("bot", share=0.1)
    store.move_alias("bot", "champion", 2, operation=SET)
    assert (store.get_canary("bot").champion_version, store.get_canary("bot").challenger_version) == (2, 2)


# --- ending a canary ---------------------------------------------------------------------------


def test_promote_moves_the_alias_through_the_gate_and_removes_the_challenger(store: SqlRegistryStore) -> None:
    store.set_canary("bot", share=0.2, now=T0)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    later = T0 + dt.timedelta(days=1)
    ended = store.end_canary("bot", outcome=CanaryOutcome.PROMOTE, actor="ci", reason="won", now=later)
    assert (ended.active, ended.outcome, ended.share) == (False, CanaryOutcome.PROMOTE, 0.0)
    assert (ended.champion_version, ended.challenger_version, ended.updated_at) == (2, 2, later)
    assert store.get_model("bot").aliases == {"champion": 2}
    with pytest.raises(NotFound):
        store.get_canary("bot")
    assert _history(store)[:2] == [("challenger", DELETE, 2, 0), ("champion", PROMOTE, 1, 2)]
    events = _events(store)
    # The champion moves, the split ends, then the challenger's alias goes (serving stops routing to
    # the challenger before it hears the alias is gone).
    assert [(t.split(".")[2], e.get("alias"), e.get("version"), e.get("active")) for t, e in events] == [
        ("alias_changed", "champion", 2, None),
        ("canary_changed", "champion", None, False),
        ("alias_changed", "challenger", None, None),
    ]
    ended_event = events[1][1]
    assert (ended_event["outcome"], ended_event["share"], ended_event["actor"], ended_event["reason"]) == (
        "promote",
        0.0,
        "ci",
        "won",
    )
    assert (ended_event["champion_version"], ended_event["challenger_version"]) == (2, 2)
    assert events[0][1]["previous_version"] == 1 and events[2][1]["previous_version"] == 2


def test_promote_through_a_failing_gate_changes_nothing(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "challenger", 3, operation=SET)
    canary = store.set_canary("bot", share=0.2)
    history = _history(store)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    with pytest.raises(GateFailed, match=r"eval_accuracy = 0\.7, needs >= 0\.8"):
        store.end_canary("bot", outcome=CanaryOutcome.PROMOTE, actor="ci")
    assert store.get_canary("bot") == canary
    assert store.get_model("bot").aliases == {"champion": 1, "challenger": 3}
    assert _history(store) == history
    assert store.outbox.pending() == []


def test_rollback_keeps_the_champion_and_removes_the_challenger(store: SqlRegistryStore) -> None:
    store.set_canary("bot", share=0.2)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    ended = store.end_canary("bot", outcome=CanaryOutcome.ROLLBACK, actor="oncall", reason="worse")
    assert (ended.active, ended.outcome, ended.share, ended.champion_version, ended.challenger_version) == (
        False,
        CanaryOutcome.ROLLBACK,
        0.0,
        1,
        2,
    )
    assert store.get_model("bot").aliases == {"champion": 1}
    assert _history(store)[0] == ("challenger", DELETE, 2, 0)
    events = _events(store)
    assert [t for t, _ in events] == [topics.MODELS_CANARY_CHANGED, topics.MODELS_ALIAS_CHANGED]
    assert (events[0][1]["active"], events[0][1]["outcome"], events[0][1]["share"]) == (
        False,
        "rollback",
        0.0,
    )
    assert (events[1][1]["alias"], events[1][1]["version"], events[1][1]["reason"]) == (
        "challenger",
        None,
        "worse",
    )
    # A new canary starts once the challenger alias is set again.
    store.move_alias("bot", "challenger", 2, operation=SET)
    assert store.set_canary("bot", share=0.05).active


def test_ending_needs_a_canary_and_an_outcome(store: SqlRegistryStore) -> None:
    with pytest.raises(NotFound, match="no canary runs on bot@champion"):
        store.end_canary("bot", outcome=CanaryOutcome.ROLLBACK)
    store.set_canary("bot", share=0.2)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    with pytest.raises(InvalidArgument, match="outcome must be promote or rollback"):
        store.end_canary("bot", outcome="maybe")  # type: ignore[arg-type]
    assert store.outbox.pending() == []


# --- DeleteAlias of a canary's aliases ---------------------------------------------------------


def test_deleting_the_challenger_alias_ends_the_canary_as_a_rollback(store: SqlRegistryStore) -> None:
    store.set_canary("bot", share=0.2)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    change = store.delete_alias("bot", "challenger", actor="oncall", reason="bad answers")
    assert (change.alias, change.operation, change.from_version, change.to_version) == (
        "challenger",
        DELETE,
        2,
        0,
    )
    with pytest.raises(NotFound):
        store.get_canary("bot")
    events = _events(store)
    assert [t for t, _ in events] == [topics.MODELS_CANARY_CHANGED, topics.MODELS_ALIAS_CHANGED]
    assert (events[0][1]["active"], events[0][1]["outcome"], events[0][1]["actor"]) == (
        False,
        "rollback",
        "oncall",
    )
    assert store.get_model("bot").aliases == {"champion": 1}


def test_deleting_the_alias_a_canary_runs_on_is_refused(store: SqlRegistryStore) -> None:
    canary = store.set_canary("bot", share=0.2)
    store.outbox.remove([e.id for e in store.outbox.pending()])
    with pytest.raises(FailedPrecondition, match="a canary runs on bot@champion .* end it with EndCanary"):
        store.delete_alias("bot", "champion")
    assert store.get_canary("bot") == canary
    assert store.get_model("bot").aliases == {"champion": 1, "challenger": 2}
    assert store.outbox.pending() == []


# --- through the gRPC servicer -----------------------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, SqlRegistryStore]]:
    """The RegistryService on loopback over a filled store: (address, store)."""
    store = SqlRegistryStore(f"sqlite:///{tmp_path}/registry.sqlite")
    _fill(store)
    server = GrpcServer("registry", "127.0.0.1", free_port(), AuthSettings(auth_disabled=True))
    registry = Registry(store)
    server.add(
        registry_pb2_grpc.add_RegistryServiceServicer_to_server,
        RegistryServicer(lambda: registry),
        "llmops.registry.v1.RegistryService",
    )
    await server.start()
    await server.set_serving()
    yield server.address, store
    await server.stop(0)
    store.close()


@pytest.fixture
async def stub(
    served: tuple[str, SqlRegistryStore],
) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(served[0]) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


async def test_canary_rpcs_set_get_and_end_with_promote(
    stub: registry_pb2_grpc.RegistryServiceStub, served: tuple[str, SqlRegistryStore]
) -> None:
    canary = await stub.SetCanary(pb.SetCanaryRequest(model="bot", share=0.25, actor="ml-lead", reason="r"))
    assert (canary.alias, canary.challenger_alias, canary.share, canary.active) == (
        "champion",
        "challenger",
        0.25,
        True,
    )
    assert (canary.champion_version, canary.challenger_version, canary.outcome) == (
        1,
        2,
        pb.CANARY_OUTCOME_UNSPECIFIED,
    )
    assert canary.updated_at.seconds > 0
    assert await stub.GetCanary(pb.GetCanaryRequest(model="bot")) == canary
    ended = await stub.EndCanary(
        pb.EndCanaryRequest(model="bot", outcome=pb.CANARY_OUTCOME_PROMOTE, actor="ci", reason="won")
    )
    assert (ended.active, ended.outcome, ended.share, ended.champion_version) == (
        False,
        pb.CANARY_OUTCOME_PROMOTE,
        0.0,
        2,
    )
    champion = await stub.GetVersion(pb.GetVersionRequest(model="bot", alias="champion"))
    assert champion.version == 2 and list(champion.aliases) == ["champion"]
    code, message = await _code(stub.GetCanary(pb.GetCanaryRequest(model="bot")))
    assert code == grpc.StatusCode.NOT_FOUND and "no canary runs on bot@champion" in message
    store = served[1]
    assert [t.split(".")[2] for t, _ in _events(store)] == [
        "canary_changed",
        "alias_changed",
        "canary_changed",
        "alias_changed",
    ]


async def test_canary_rpcs_refuse_bad_requests_with_their_status(
    stub: registry_pb2_grpc.RegistryServiceStub, served: tuple[str, SqlRegistryStore]
) -> None:
    cases = [
        (
            stub.SetCanary(pb.SetCanaryRequest(model="bot", share=1.5)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "share must be between 0 and 1",
        ),
        (
            stub.SetCanary(pb.SetCanaryRequest(model="bot", challenger_alias="b", share=0.1)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "no alias 'b'",
        ),
        (
            stub.SetCanary(pb.SetCanaryRequest(model="bot", alias="challenger", share=0.1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "alias and challenger_alias are both 'challenger'",
        ),
        (
            stub.SetCanary(pb.SetCanaryRequest(share=0.1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "model is empty",
        ),
        (
            stub.GetCanary(pb.GetCanaryRequest(model="ghost")),
            grpc.StatusCode.NOT_FOUND,
            "'ghost' not found",
        ),
        (
            stub.EndCanary(pb.EndCanaryRequest(model="bot")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "outcome is required",
        ),
        (
            stub.EndCanary(pb.EndCanaryRequest(model="bot", outcome=7)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "outcome 7 is not a known CanaryOutcome",
        ),
        (
            stub.EndCanary(pb.EndCanaryRequest(model="bot", outcome=pb.CANARY_OUTCOME_ROLLBACK)),
            grpc.StatusCode.NOT_FOUND,
            "no canary runs on bot@champion",
        ),
    ]
    for call, code, fragment in cases:
        got_code, message = await _code(call)
        assert (got_code, fragment in message) == (code, True), message
    assert served[1].outbox.pending() == []


async def test_a_failed_gate_at_the_end_is_failed_precondition_and_the_canary_runs_on(
    stub: registry_pb2_grpc.RegistryServiceStub, served: tuple[str, SqlRegistryStore]
) -> None:
    await stub.SetAlias(pb.SetAliasRequest(model="bot", alias="challenger", version=3))
    canary = await stub.SetCanary(pb.SetCanaryRequest(model="bot", share=0.5))
    store = served[1]
    queued = len(store.outbox.pending())
    code, message = await _code(
        stub.EndCanary(pb.EndCanaryRequest(model="bot", outcome=pb.CANARY_OUTCOME_PROMOTE))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "eval_accuracy = 0.7, needs >= 0.8" in message
    assert await stub.GetCanary(pb.GetCanaryRequest(model="bot")) == canary
    assert len(store.outbox.pending()) == queued


async def test_delete_alias_rpc_of_the_challenger_ends_the_canary(
    stub: registry_pb2_grpc.RegistryServiceStub, served: tuple[str, SqlRegistryStore]
) -> None:
    await stub.SetCanary(pb.SetCanaryRequest(model="bot", share=0.5))
    code, message = await _code(stub.DeleteAlias(pb.DeleteAliasRequest(model="bot", alias="champion")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "end it with EndCanary" in message
    deleted = await stub.DeleteAlias(pb.DeleteAliasRequest(model="bot", alias="challenger", actor="oncall"))
    assert (deleted.alias, deleted.operation, deleted.to_version) == ("challenger", "delete", 0)
    assert (await _code(stub.GetCanary(pb.GetCanaryRequest(model="bot"))))[0] == grpc.StatusCode.NOT_FOUND
    ended = _canary_events(served[1])[-1]
    assert (ended["active"], ended["outcome"], ended["share"]) == (False, "rollback", 0.0)


# --- from the command line ---------------------------------------------------------------------

runner = CliRunner()


async def _cli(address: str, *args: str) -> tuple[int, str]:
    """Run ``llmops registry ARGS``: the exit code and the output with rich's line wrapping undone."""
    env = {"LLMOPS_REGISTRY_ADDRESS": address, "LLMOPS_API_KEY": "unused", "USER": "alice"}
    # The CLI's channel is blocking: it runs in a thread while the server runs on this loop.
    result = await asyncio.to_thread(runner.invoke, app, ["registry", *args], env=env)
    return result.exit_code, " ".join(result.output.split())


async def test_the_canary_commands(served: tuple[str, SqlRegistryStore]) -> None:
    address, store = served
    code, out = await _cli(address, "canary", "set", "bot", "--share", "0.1", "--challenger", "nope")
    assert code == 1 and "canary not set: model 'bot' has no alias 'nope'" in out
    code, out = await _cli(address, "canary", "set", "bot", "--share", "0.1", "--reason", "try v2")
    assert code == 0, out
    assert "bot@champion: 10% to challenger (version 2), 90% to champion (version 1)" in out
    assert store.get_canary("bot").actor == "alice"
    code, out = await _cli(address, "canary", "get", "bot")
    assert code == 0 and "by alice: try v2" in out
    code, out = await _cli(address, "canary", "end", "bot")
    assert code == 2 and "exactly one of --promote and --rollback" in out
    code, out = await _cli(address, "canary", "set", "bot", "--share", "2")
    assert code == 2
    code, out = await _cli(address, "canary", "end", "bot", "--rollback", "--reason", "worse")
    assert code == 0, out
    assert "canary against challenger ended (rollback); champion holds version 1" in out
    assert store.get_model("bot").aliases == {"champion": 1}
    code, out = await _cli(address, "canary", "get", "bot")
    assert code == 1 and "NOT_FOUND" in out


async def test_canary_end_promote_names_the_failed_gate(served: tuple[str, SqlRegistryStore]) -> None:
    address, store = served
    store.move_alias("bot", "challenger", 3, operation=SET)
    store.set_canary("bot", share=0.5)
    code, out = await _cli(address, "canary", "end", "bot", "--promote")
    assert code == 1
    assert "not ended:" in out and "eval_accuracy = 0.7" in out
    assert "canary end bot --rollback" in out
    assert store.get_canary("bot").share == 0.5


def test_canary_text_for_a_running_and_an_ended_canary() -> None:
    running = pb.Canary(
        model="bot",
        alias="champion",
        challenger_alias="challenger",
        share=0.25,
        champion_version=1,
        challenger_version=2,
        active=True,
    )
    assert canary_text(running) == "bot@champion: 25% to challenger (version 2), 75% to champion (version 1)"
    running.share = 0.001
    assert canary_text(running).startswith("bot@champion: 0.1% to challenger (version 2), 99.9% to champion")
    ended = pb.Canary(
        model="bot",
        alias="champion",
        challenger_alias="challenger",
        champion_version=2,
        challenger_version=2,
        outcome=pb.CANARY_OUTCOME_PROMOTE,
    )
    assert (
        canary_text(ended)
        == "bot@champion: canary against challenger ended (promote); champion holds version 2"
    )
