"""Labeling functions: rules in Python that label tasks programmatically.

A function is registered in code with :func:`labeling_function` (built-ins below; more from the
modules named in ``LLMOPS_LABELING_FUNCTION_MODULES``) and enabled per queue through the
``RegisterLabelingFunction`` RPC. It returns a label value, ``(value, confidence)``, or ``None`` to
abstain. Its labels are marked with source RULE and never overwrite a human label.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from llmops.core.errors import AlreadyExists, NotFound
from llmops.labeling.domain.models import LabelValue, Queue, TaskInput, TaskType

Result = LabelValue | tuple[LabelValue, float] | None
Function = Callable[[TaskInput, Queue], Result]


@dataclass(frozen=True)
class LabelingFunction:
    name: str
    version: str
    task_types: frozenset[TaskType]
    fn: Function
    description: str

    @property
    def labeler_id(self) -> str:
        return f"rule:{self.name}@{self.version}"

    def apply(self, task: TaskInput, queue: Queue) -> tuple[LabelValue, float] | None:
        result = self.fn(task, queue)
        if result is None:
            return None
        if isinstance(result, tuple):
            value, confidence = result
            return value, float(confidence)
        return result, 1.0


REGISTRY: dict[tuple[str, str], LabelingFunction] = {}


def labeling_function(name: str, version: str, task_types: set[TaskType]) -> Callable[[Function], Function]:
    """Register ``fn`` as labeling function ``name@version`` for queues of ``task_types``."""

    def register(fn: Function) -> Function:
        key = (name, version)
        if key in REGISTRY and REGISTRY[key].fn is not fn:
            raise AlreadyExists(f"labeling function {name}@{version} is already registered")
        REGISTRY[key] = LabelingFunction(name, version, frozenset(task_types), fn, (fn.__doc__ or "").strip())
        return fn

    return register


def load_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"LLMOPS_LABELING_FUNCTION_MODULES: cannot import {module!r} ({exc})") from exc


def lookup(name: str, version: str) -> LabelingFunction:
    """The registered function ``name@version``; NotFound lists the registered ones."""
    try:
        return REGISTRY[(name, version)]
    except KeyError:
        known = ", ".join(sorted(f"{n}@{v}" for n, v in REGISTRY)) or "none"
        raise NotFound(f"no labeling function {name}@{version} (registered: {known})") from None


# --- built-ins ---------------------------------------------------------------------------------


@labeling_function("keyword", "1", {TaskType.CLASSIFICATION})
def keyword(task: TaskInput, queue: Queue) -> Result:
    """Label by keywords from the queue's metadata: ``lf.keyword.<label>`` = ``word|other phrase``.

    The label whose keywords match first (in label-set order) wins; no match abstains.
    """
    text = f"{task.text}\n{task.prompt}\n{task.response}".lower()
    for label in queue.label_set:
        words = [
            w.strip().lower() for w in queue.metadata.get(f"lf.keyword.{label}", "").split("|") if w.strip()
        ]
        if any(re.search(rf"\b{re.escape(w)}\b", text) for w in words):
            return label, 0.7
    return None


@labeling_function("feedback_score", "1", {TaskType.RATING})
def feedback_score(task: TaskInput, queue: Queue) -> Result:
    """Turn the user's feedback score (task metadata ``feedback_score`` in [0, 1]) into a rating."""
    raw = task.metadata.get("feedback_score")
    if raw is None:
        return None
    score = min(max(float(raw), 0.0), 1.0)
    return queue.rating_min + score * (queue.rating_max - queue.rating_min), 0.5
