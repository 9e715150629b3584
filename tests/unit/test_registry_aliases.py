"""Alias rules: where a rollback goes (pure), and set / promote / rollback / delete in the store."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.registry.domain.aliases import earlier_holders, rollback_target
from llmops.registry.domain.errors import (
    GateFailed,
    InvalidArgument,
    NotFound,
    NothingToRollBack,
    VersionNotReady,
)
from llmops.registry.domain.gates import parse_gate
from llmops.registry.domain.models import AliasChange, AliasOperation, VersionSpec, VersionStatus
from llmops.registry.store import SqlRegistryStore

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
SET, PROMOTE, ROLLBACK, DELETE = (
    AliasOperation.SET,
    AliasOperation.PROMOTE,
    AliasOperation.ROLLBACK,
    AliasOperation.DELETE,
)


def _history(*moves: tuple[AliasOperation, int]) -> list[AliasChange]:
    """Changes of one alias from (operation, to_version) pairs; from_version follows the replay."""
    changes, current = [], 0
    for i, (op, to) in enumerate(moves, 1):
        changes.append(AliasChange(i, "m", "champion", current, to, "t", "", op, T0))
        current = to
    return changes


# --- the rule, without a store -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("moves", "target"),
    [
        ([], None),
        ([(PROMOTE, 1)], None),
        ([(PROMOTE, 1), (PROMOTE, 2)], 1),
        ([(PROMOTE, 1), (PROMOTE, 2), (ROLLBACK, 1)], None),
        ([(PROMOTE, 1), (PROMOTE, 2), (PROMOTE, 3)], 2),
        ([(PROMOTE, 1), (PROMOTE, 2), (PROMOTE, 3), (ROLLBACK, 2)], 1),
        ([(PROMOTE, 1), (PROMOTE, 2), (ROLLBACK, 1), (PROMOTE, 3)], 1),
        ([(SET, 1), (PROMOTE, 2)], 1),
        ([(PROMOTE, 1), (DELETE, 0)], 1),
        ([(PROMOTE, 1), (DELETE, 0), (ROLLBACK, 1)], None),
        # Re-created at the same version after a delete: going "back" to it would change nothing.
        ([(PROMOTE, 1), (DELETE, 0), (SET, 1)], None),
        ([(PROMOTE, 2), (PROMOTE, 1), (DELETE, 0), (SET, 1)], 2),
    ],
)
def test_rollback_target(moves: list[tuple[AliasOperation, int]], target: int | None) -> None:
    assert rollback_target(_history(*moves)) == target


def test_rollbacks_walk_back_instead_of_undoing_each_other() -> None:
    history = _history((PROMOTE, 1), (PROMOTE, 2), (PROMOTE, 3), (ROLLBACK, 2), (ROLLBACK, 1))
    assert earlier_holders(history) == ([], 1)
    assert rollback_target(history) is None


# --- in the store ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlRegistryStore]:
    s = SqlRegistryStore(f"sqlite:///{tmp_path}/registry.sqlite")
    s.create_model("bot", base_model="smollm2", gate=parse_gate(["eval_accuracy>=0.8"]), now=T0)
    for accuracy in (0.7, 0.85, 0.9):
        s.register_version(VersionSpec("bot", "file:///a", metrics={"eval_accuracy": accuracy}), now=T0)
    s.outbox.remove([e.id for e in s.outbox.pending()])
    yield s
    s.close()


def _events(store: SqlRegistryStore) -> list[dict]:
    return [json.loads(e.payload) for e in store.outbox.pending()]


def test_promote_is_gated_and_names_the_failed_metric(store: SqlRegistryStore) -> None:
    with pytest.raises(GateFailed, match=r"eval_accuracy = 0\.7, needs >= 0\.8"):
        store.move_alias("bot", "champion", 1, operation=PROMOTE, actor="ci")
    assert store.get_model("bot").aliases == {}
    assert store.outbox.pending() == []
    change = store.move_alias("bot", "champion", 2, operation=PROMOTE, actor="ci", reason="better")
    assert (change.from_version, change.to_version, change.operation) == (0, 2, PROMOTE)
    assert store.get_version_by_alias("bot", "champion").version == 2


def test_set_alias_is_an_ungated_override_recorded_as_set(store: SqlRegistryStore) -> None:
    change = store.move_alias("bot", "champion", 1, operation=SET, actor="oncall", reason="hotfix")
    assert change.operation == SET and change.to_version == 1
    (recorded,) = store.alias_history("bot", "champion").items
    assert (recorded.operation, recorded.actor, recorded.reason) == (SET, "oncall", "hotfix")


def test_promote_promote_rollback_then_nothing_left(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "champion", 2, operation=PROMOTE, actor="ci")
    store.move_alias("bot", "champion", 3, operation=PROMOTE, actor="ci")
    back = store.rollback_alias("bot", "champion", actor="oncall", reason="latency regression")
    assert (back.from_version, back.to_version, back.operation) == (3, 2, ROLLBACK)
    assert store.get_model("bot").aliases == {"champion": 2}
    with pytest.raises(NothingToRollBack, match="no earlier holder"):
        store.rollback_alias("bot", "champion", actor="oncall")
    assert store.get_model("bot").aliases == {"champion": 2}
    history = store.alias_history("bot", "champion").items
    assert [(c.operation, c.from_version, c.to_version) for c in history] == [
        (ROLLBACK, 3, 2),
        (PROMOTE, 2, 3),
        (PROMOTE, 0, 2),
    ]


def test_rollback_does_not_regate(store: SqlRegistryStore) -> None:
    # An operator escaping a bad version goes back to what served before, even if the gate tightened.
    store.move_alias("bot", "champion", 2, operation=PROMOTE)
    store.move_alias("bot", "champion", 3, operation=PROMOTE)
    store.set_gate("bot", parse_gate(["eval_accuracy>=0.95"]))
    assert store.rollback_alias("bot", "champion").to_version == 2


def test_every_change_queues_an_alias_changed_event(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "champion", 2, operation=PROMOTE, actor="ci", reason="r1")
    store.move_alias("bot", "champion", 3, operation=PROMOTE, actor="ci", reason="r2")
    store.rollback_alias("bot", "champion", actor="oncall", reason="r3")
    store.delete_alias("bot", "champion", actor="oncall", reason="r4")
    events = _events(store)
    assert [(e["version"], e["previous_version"], e["actor"], e["reason"]) for e in events] == [
        (2, None, "ci", "r1"),
        (3, 2, "ci", "r2"),
        (2, 3, "oncall", "r3"),
        (None, 2, "oncall", "r4"),
    ]
    assert all(e["model"] == "bot" and e["alias"] == "champion" for e in events)
    assert [e["artifact_uri"] for e in events] == ["file:///a", "file:///a", "file:///a", ""]
    assert all(e["base_model"] == "smollm2" for e in events)


def test_moving_an_alias_where_it_already_is_records_nothing(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "champion", 2, operation=PROMOTE)
    again = store.move_alias("bot", "champion", 2, operation=PROMOTE)
    assert (again.id, again.from_version, again.to_version) == (0, 2, 2)
    assert len(store.alias_history("bot", "champion").items) == 1
    assert len(store.outbox.pending()) == 1


def test_delete_then_rollback_restores_the_alias(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "champion", 2, operation=PROMOTE)
    deleted = store.delete_alias("bot", "champion", actor="oncall")
    assert (deleted.from_version, deleted.to_version, deleted.operation) == (2, 0, DELETE)
    with pytest.raises(NotFound, match="has no alias 'champion'"):
        store.get_version_by_alias("bot", "champion")
    assert store.rollback_alias("bot", "champion").to_version == 2
    assert store.get_version("bot", 2).aliases == ("champion",)


def test_aliases_are_independent(store: SqlRegistryStore) -> None:
    store.move_alias("bot", "champion", 2, operation=PROMOTE)
    store.move_alias("bot", "challenger", 3, operation=SET)
    store.move_alias("bot", "challenger", 1, operation=SET)
    assert store.rollback_alias("bot", "challenger").to_version == 3
    assert store.get_model("bot").aliases == {"champion": 2, "challenger": 3}
    with pytest.raises(NothingToRollBack):
        store.rollback_alias("bot", "champion")
    assert len(store.alias_history("bot").items) == 4


def test_unknown_things_are_not_found(store: SqlRegistryStore) -> None:
    with pytest.raises(NotFound, match="'nope' not found"):
        store.move_alias("nope", "champion", 1, operation=SET)
    with pytest.raises(NotFound, match="has no version 9 \\(its latest is 3\\)"):
        store.move_alias("bot", "champion", 9, operation=SET)
    with pytest.raises(NotFound, match="no alias 'champion'"):
        store.rollback_alias("bot", "champion")
    with pytest.raises(NotFound, match="no alias 'champion'"):
        store.delete_alias("bot", "champion")
    with pytest.raises(NotFound, match="never set"):
        store.alias_history("bot", "champion")


def test_invalid_alias_requests_name_the_field(store: SqlRegistryStore) -> None:
    with pytest.raises(InvalidArgument, match="alias is empty"):
        store.move_alias("bot", "", 1, operation=SET)
    with pytest.raises(InvalidArgument, match="alias 'my alias' is not a valid alias"):
        store.move_alias("bot", "my alias", 1, operation=SET)
    with pytest.raises(InvalidArgument, match="version must be 1 or more"):
        store.move_alias("bot", "champion", 0, operation=SET)
    with pytest.raises(InvalidArgument, match="model is empty"):
        store.rollback_alias("", "champion")


def test_only_ready_versions_hold_aliases(store: SqlRegistryStore) -> None:
    store.register_version(
        VersionSpec("bot", "s3://gone", metrics={"eval_accuracy": 0.99}, status=VersionStatus.FAILED)
    )
    with pytest.raises(VersionNotReady, match="bot version 4 is failed"):
        store.move_alias("bot", "champion", 4, operation=SET)
    with pytest.raises(VersionNotReady):
        store.move_alias("bot", "champion", 4, operation=PROMOTE)
