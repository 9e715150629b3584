"""Promotion gates: parsing "metric>=value" rules, evaluating them, and the default-gate setting."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.gates import check_gate, evaluate_gate, parse_gate, parse_rule
from llmops.registry.domain.models import Comparator, GateRule
from llmops.registry.settings import Settings


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("eval_accuracy>=0.8", GateRule("eval_accuracy", Comparator.GTE, 0.8)),
        (" eval_loss <= 1.5 ", GateRule("eval_loss", Comparator.LTE, 1.5)),
        ("rouge-l>0", GateRule("rouge-l", Comparator.GT, 0.0)),
        ("eval/toxicity<1e-3", GateRule("eval/toxicity", Comparator.LT, 0.001)),
    ],
)
def test_rules_parse_from_text(text: str, rule: GateRule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("eval_accuracy", "METRIC>=VALUE"),
        ("eval_accuracy=>0.8", "not a metric name"),
        ("eval_accuracy>=high", "'high' is not a number"),
        ("eval_accuracy>=nan", "finite"),
        ("eval_accuracy>=inf", "finite"),
        ("eval accuracy>=0.8", "METRIC>=VALUE"),
        (">=0.8", "METRIC>=VALUE"),
    ],
)
def test_bad_rules_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        parse_rule(text)


def test_a_gate_keeps_ranges_and_drops_exact_duplicates() -> None:
    gate = parse_gate(["loss>=0.1", "loss<=2", "loss>=0.1"])
    assert gate == (GateRule("loss", Comparator.GTE, 0.1), GateRule("loss", Comparator.LTE, 2.0))


def test_check_gate_names_the_bad_rule() -> None:
    with pytest.raises(InvalidArgument, match=r"gate\[1\]\.threshold"):
        check_gate([GateRule("a", Comparator.GT, 0), GateRule("b", Comparator.GT, math.inf)])
    with pytest.raises(InvalidArgument, match=r"gate\[0\]\.metric is empty"):
        check_gate([GateRule("", Comparator.GT, 0)])


def test_an_empty_gate_passes_everything() -> None:
    assert evaluate_gate((), {}).passed


@pytest.mark.parametrize(
    ("comparator", "value", "passes"),
    [
        (Comparator.GTE, 0.8, True),
        (Comparator.GTE, 0.79, False),
        (Comparator.GT, 0.8, False),
        (Comparator.GT, 0.81, True),
        (Comparator.LTE, 0.8, True),
        (Comparator.LTE, 0.81, False),
        (Comparator.LT, 0.8, False),
        (Comparator.LT, 0.7, True),
    ],
)
def test_each_comparator_at_its_boundary(comparator: Comparator, value: float, passes: bool) -> None:
    assert evaluate_gate([GateRule("m", comparator, 0.8)], {"m": value}).passed is passes


def test_every_failed_rule_is_listed_with_its_actual_value() -> None:
    gate = parse_gate(["eval_accuracy>=0.8", "eval_loss<=1.5", "bleu>0.2", "rouge>=0.1"])
    result = evaluate_gate(gate, {"eval_accuracy": 0.62, "eval_loss": 2.25, "rouge": 0.3})
    assert not result.passed
    assert [(f.rule.metric, f.actual) for f in result.failures] == [
        ("eval_accuracy", 0.62),
        ("eval_loss", 2.25),
        ("bleu", None),
    ]
    message = result.describe()
    assert "eval_accuracy = 0.62, needs >= 0.8" in message
    assert "eval_loss = 2.25, needs <= 1.5" in message
    assert "bleu is missing (needs > 0.2)" in message
    assert "rouge" not in message


def test_nan_metric_fails_every_rule() -> None:
    assert not evaluate_gate(parse_gate(["m>=0"]), {"m": math.nan}).passed
    assert not evaluate_gate(parse_gate(["m<=0"]), {"m": math.nan}).passed


def test_thresholds_are_shown_with_every_digit() -> None:
    result = evaluate_gate(parse_gate(["m>=0.8"]), {"m": 0.7999999})
    assert "0.7999999" in result.describe()


# --- the default gate setting ------------------------------------------------------------------


def test_default_gate_from_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    monkeypatch.setenv("LLMOPS_REGISTRY_DEFAULT_GATE", "eval_accuracy>=0.8, eval_loss<=1.5")
    assert Settings().default_gate_rules() == (
        GateRule("eval_accuracy", Comparator.GTE, 0.8),
        GateRule("eval_loss", Comparator.LTE, 1.5),
    )
    monkeypatch.setenv("LLMOPS_REGISTRY_DEFAULT_GATE", '["bleu>0.2"]')
    assert Settings().default_gate_rules() == (GateRule("bleu", Comparator.GT, 0.2),)
    monkeypatch.delenv("LLMOPS_REGISTRY_DEFAULT_GATE")
    assert Settings().default_gate_rules() == ()
    assert Settings().auto_create_models is True


def test_a_bad_default_gate_fails_at_start_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    monkeypatch.setenv("LLMOPS_REGISTRY_DEFAULT_GATE", "eval_accuracy=0.8")
    with pytest.raises(ValidationError, match="LLMOPS_REGISTRY_DEFAULT_GATE"):
        Settings()


def test_database_url_must_be_sqlite_or_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("LLMOPS_AUTH_DISABLED", "true")
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMOPS_REGISTRY_DATABASE_URL", "mysql://db/registry")
    with pytest.raises(ValidationError, match="LLMOPS_REGISTRY_DATABASE_URL"):
        Settings()
    monkeypatch.delenv("LLMOPS_REGISTRY_DATABASE_URL")
    assert Settings().resolved_database_url() == f"sqlite:///{tmp_path}/registry/registry.sqlite"
