"""Promotion gates: rules on a version's metrics, parsed from text and evaluated without I/O.

A version passes a gate when every rule's metric exists and compares true; an empty gate passes
everything. The result lists every failed rule with the value it saw, so an operator learns all that
is wrong at once rather than one rule per attempt.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.models import Comparator, GateRule

MAX_RULES = 100
MAX_METRIC_CHARS = 128
# Metric names as training writes them: "eval_accuracy", "eval/loss", "rouge-l".
METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
# Longest operators first, so ">=" is not read as ">" followed by "=0.8".
_RULE = re.compile(r"^\s*(?P<metric>\S+?)\s*(?P<op>>=|<=|>|<)\s*(?P<threshold>\S+)\s*$")

_COMPARE: dict[Comparator, Callable[[float, float], bool]] = {
    Comparator.GTE: operator.ge,
    Comparator.LTE: operator.le,
    Comparator.GT: operator.gt,
    Comparator.LT: operator.lt,
}


def check_metric_name(name: str, field: str = "metric") -> str:
    """``name`` if it is a usable metric name.

    Raises:
        InvalidArgument: empty, too long or with characters outside ``METRIC_NAME``.
    """
    if not name:
        raise InvalidArgument(f"{field} is empty")
    if len(name) > MAX_METRIC_CHARS:
        raise InvalidArgument(f"{field} {name[:40]!r}... is longer than {MAX_METRIC_CHARS} characters")
    if not METRIC_NAME.fullmatch(name):
        raise InvalidArgument(f"{field} {name!r} is not a metric name (letters, digits and _ . : / - only)")
    return name


def check_rule(rule: GateRule, field: str = "gate") -> GateRule:
    """``rule`` if its metric name and threshold are usable.

    Raises:
        InvalidArgument: a bad metric name, or a threshold that is NaN or infinite.
    """
    check_metric_name(rule.metric, f"{field}.metric")
    if not isinstance(rule.comparator, Comparator):
        raise InvalidArgument(f"{field}.comparator must be one of >=, <=, >, < (got {rule.comparator!r})")
    if not math.isfinite(rule.threshold):
        raise InvalidArgument(f"{field}.threshold of {rule.metric!r} must be a finite number")
    return rule


def check_gate(rules: Iterable[GateRule]) -> tuple[GateRule, ...]:
    """The rules of a gate, validated; a metric may appear in several rules (a range).

    Raises:
        InvalidArgument: a rule is invalid (the message says which), or there are too many.
    """
    checked = tuple(check_rule(r, f"gate[{i}]") for i, r in enumerate(rules))
    if len(checked) > MAX_RULES:
        raise InvalidArgument(f"gate has {len(checked)} rules; at most {MAX_RULES} are allowed")
    # Exact duplicates say nothing more; keeping them would only repeat lines in failure messages.
    return tuple(dict.fromkeys(checked))


def parse_rule(text: str) -> GateRule:
    """Parse ``"metric>=value"`` (also ``<=``, ``>``, ``<``; spaces allowed) into a rule.

    Raises:
        InvalidArgument: the text is not of that form, or the value is not a finite number.
    """
    match = _RULE.match(text)
    if match is None:
        raise InvalidArgument(
            f"gate rule {text!r} is not of the form METRIC>=VALUE (or <=, >, <), e.g. eval_accuracy>=0.8"
        )
    try:
        threshold = float(match["threshold"])
    except ValueError:
        raise InvalidArgument(f"gate rule {text!r}: {match['threshold']!r} is not a number") from None
    return check_rule(GateRule(match["metric"], Comparator(match["op"]), threshold), f"gate rule {text!r}")


def parse_gate(texts: Iterable[str]) -> tuple[GateRule, ...]:
    """Parse several ``"metric>=value"`` rules (see :func:`parse_rule`)."""
    return check_gate(parse_rule(t) for t in texts)


@dataclass(frozen=True)
class RuleFailure:
    """A rule a version failed, with the value it had (None: the metric is missing)."""

    rule: GateRule
    actual: float | None

    def describe(self) -> str:
        r = self.rule
        if self.actual is None:
            return f"{r.metric} is missing (needs {r.comparator.value} {r.threshold!r})"
        return f"{r.metric} = {self.actual!r}, needs {r.comparator.value} {r.threshold!r}"


@dataclass(frozen=True)
class GateResult:
    failures: tuple[RuleFailure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        """One line naming every failed metric with its actual value and threshold."""
        return "; ".join(f.describe() for f in self.failures)


def evaluate_gate(rules: Sequence[GateRule], metrics: Mapping[str, float]) -> GateResult:
    """Check every rule against ``metrics``; a missing or NaN metric fails its rule."""
    failures = []
    for rule in rules:
        actual = metrics.get(rule.metric)
        if actual is None:
            failures.append(RuleFailure(rule, None))
        # NaN compares false with everything, so it fails every rule, which is what a gate wants.
        elif not _COMPARE[rule.comparator](actual, rule.threshold):
            failures.append(RuleFailure(rule, actual))
    return GateResult(tuple(failures))
