"""Validation of queue definitions, task inputs and label values against their queue."""

from __future__ import annotations

import dataclasses
import math
import re

from llmops.labeling.domain.errors import InvalidArgument, InvalidLabel
from llmops.labeling.domain.models import (
    DEFAULT_LEASE_SECONDS,
    LabelValue,
    Preference,
    QueueSpec,
    TaskInput,
    TaskSource,
    TaskType,
)

MAX_CORRECTION_CHARS = 20_000
MAX_LABEL_CHARS = 200
MAX_LEASE_SECONDS = 7 * 24 * 3600
# Queue names appear in URLs, metric labels and dataset lineage: keep them plain.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
_PREFERENCE_ALIASES = {
    "A": Preference.A,
    "B": Preference.B,
    "TIE": Preference.TIE,
    "PREFERENCE_A": Preference.A,
    "PREFERENCE_B": Preference.B,
    "PREFERENCE_TIE": Preference.TIE,
}


def validate_queue_spec(spec: QueueSpec) -> QueueSpec:
    """Check ``spec`` and return it with defaults applied (0 labelers -> 1, 0 lease -> default).

    Raises:
        InvalidArgument: naming every problem found.
    """
    problems: list[str] = []
    if not _QUEUE_NAME.match(spec.name or ""):
        problems.append(
            f"queue name {spec.name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    try:
        task_type = TaskType(spec.task_type)
    except ValueError:
        task_type = None
        problems.append(f"task_type {spec.task_type!r} is not one of {[t.value for t in TaskType]}")

    label_set = tuple(spec.label_set)
    try:
        rating_min, rating_max = float(spec.rating_min), float(spec.rating_max)
    except (TypeError, ValueError):
        rating_min, rating_max = 0.0, 0.0
        problems.append(f"rating bounds must be numbers, got {spec.rating_min!r} and {spec.rating_max!r}")
    if task_type is TaskType.CLASSIFICATION:
        if not label_set:
            problems.append("a classification queue needs a non-empty label_set")
        if any(not isinstance(x, str) or not x.strip() for x in label_set):
            problems.append("label_set entries must be non-empty strings")
        elif any(len(x) > MAX_LABEL_CHARS for x in label_set):
            problems.append(f"label_set entries must be at most {MAX_LABEL_CHARS} characters")
        if len(set(label_set)) != len(label_set):
            problems.append("label_set has duplicate labels")
    elif label_set:
        problems.append(f"label_set is only for classification queues, not {spec.task_type}")
    if task_type is TaskType.RATING:
        if not (math.isfinite(rating_min) and math.isfinite(rating_max)) or rating_min >= rating_max:
            problems.append(
                f"a rating queue needs finite rating_min < rating_max, got [{rating_min}, {rating_max}]"
            )

    labelers = spec.labelers_per_task or 1
    if not isinstance(labelers, int) or labelers < 1:
        problems.append(f"labelers_per_task must be an integer >= 1, got {spec.labelers_per_task!r}")
    lease_seconds = spec.lease_seconds or DEFAULT_LEASE_SECONDS
    if not isinstance(lease_seconds, int) or not 1 <= lease_seconds <= MAX_LEASE_SECONDS:
        problems.append(
            f"lease_seconds must be an integer in [1, {MAX_LEASE_SECONDS}], got {spec.lease_seconds!r}"
        )
    problems.extend(_metadata_problems(spec.metadata))
    if problems:
        raise InvalidArgument("; ".join(problems))
    return dataclasses.replace(
        spec,
        task_type=task_type,
        label_set=label_set,
        rating_min=rating_min,
        rating_max=rating_max,
        labelers_per_task=labelers,
        lease_seconds=lease_seconds,
        metadata=dict(spec.metadata),
    )


def validate_task_input(task_type: TaskType, task: TaskInput) -> TaskInput:
    """Check that ``task`` has the fields its queue's task type needs; return it normalised.

    CLASSIFICATION needs ``text``; RATING and CORRECTION need ``response`` (``prompt`` optional);
    PAIRWISE_PREFERENCE needs two different candidates.

    Raises:
        InvalidArgument: naming every problem found.
    """
    task_type = TaskType(task_type)
    problems: list[str] = []
    if task_type is TaskType.CLASSIFICATION and not task.text.strip():
        problems.append("a classification task needs a non-empty text")
    elif task_type in (TaskType.RATING, TaskType.CORRECTION) and not task.response.strip():
        problems.append(f"a {task_type.value} task needs a non-empty response")
    elif task_type is TaskType.PAIRWISE_PREFERENCE:
        if not task.candidate_a.strip() or not task.candidate_b.strip():
            problems.append("a pairwise_preference task needs non-empty candidate_a and candidate_b")
        elif task.candidate_a == task.candidate_b:
            problems.append("candidate_a and candidate_b are identical: there is nothing to prefer")
    try:
        source = TaskSource(task.source)
    except ValueError:
        source = TaskSource.API
        problems.append(f"task source {task.source!r} is not one of {[s.value for s in TaskSource]}")
    problems.extend(_metadata_problems(task.metadata))
    if problems:
        where = f" (document_id {task.document_id!r})" if task.document_id else ""
        raise InvalidArgument("; ".join(problems) + where)
    return dataclasses.replace(task, source=source, metadata=dict(task.metadata))


def validate_label_value(
    task_type: TaskType,
    value: object,
    *,
    label_set: tuple[str, ...] = (),
    rating_min: float = 0.0,
    rating_max: float = 0.0,
) -> LabelValue:
    """Check ``value`` against a queue of ``task_type`` and return it in canonical form.

    Canonical forms: CLASSIFICATION -> the label string (exact member of ``label_set``);
    RATING -> float in [rating_min, rating_max] (numbers and numeric strings accepted);
    CORRECTION -> the corrected text, unchanged (non-empty, at most 20,000 characters);
    PAIRWISE_PREFERENCE -> :class:`Preference` ("A"/"B"/"TIE", any case, or "PREFERENCE_A"...).

    Raises:
        InvalidLabel: saying what is wrong with the value.
    """
    task_type = TaskType(task_type)
    if task_type is TaskType.CLASSIFICATION:
        if not isinstance(value, str):
            raise InvalidLabel(f"a classification label must be a string, got {type(value).__name__}")
        if value not in label_set:
            raise InvalidLabel(f"label {value!r} is not in the queue's label set {list(label_set)}")
        return value
    if task_type is TaskType.RATING:
        rating = _as_number(value)
        if not rating_min <= rating <= rating_max:
            raise InvalidLabel(f"rating {rating} is outside the queue's range [{rating_min}, {rating_max}]")
        return rating
    if task_type is TaskType.CORRECTION:
        if not isinstance(value, str):
            raise InvalidLabel(f"a correction must be a string, got {type(value).__name__}")
        if not value.strip():
            raise InvalidLabel("the corrected text is empty")
        if len(value) > MAX_CORRECTION_CHARS:
            raise InvalidLabel(
                f"the corrected text has {len(value)} characters, more than {MAX_CORRECTION_CHARS}"
            )
        return value
    if task_type is TaskType.PAIRWISE_PREFERENCE:
        if isinstance(value, Preference):
            return value
        if not isinstance(value, str):
            raise InvalidLabel(f"a preference must be A, B or TIE, got {type(value).__name__}")
        preference = _PREFERENCE_ALIASES.get(value.strip().upper())
        if preference is None:
            raise InvalidLabel(f"preference {value!r} is not one of A, B, TIE")
        return preference
    raise InvalidLabel(f"task type {task_type.value} has no label values")


def decode_label_value(task_type: TaskType, stored: str) -> LabelValue:
    """The value of a label as stored in text form (see :func:`encode_label_value`)."""
    task_type = TaskType(task_type)
    if task_type is TaskType.RATING:
        return float(stored)
    if task_type is TaskType.PAIRWISE_PREFERENCE:
        return Preference(stored)
    return stored


def encode_label_value(value: LabelValue) -> str:
    """A canonical value as text; ``repr`` keeps a float exact through a round trip."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _as_number(value: object) -> float:
    # bool is an int subclass; True as a rating is almost surely a caller's bug.
    if isinstance(value, bool):
        raise InvalidLabel("a rating must be a number, got bool")
    if isinstance(value, int | float):
        rating = float(value)
    elif isinstance(value, str):
        try:
            rating = float(value.strip())
        except ValueError:
            raise InvalidLabel(f"rating {value!r} is not a number") from None
    else:
        raise InvalidLabel(f"a rating must be a number, got {type(value).__name__}")
    if not math.isfinite(rating):
        raise InvalidLabel(f"rating must be finite, got {rating}")
    return rating


def _metadata_problems(metadata: object) -> list[str]:
    if not isinstance(metadata, dict):
        return [f"metadata must be a dict of strings, got {type(metadata).__name__}"]
    if any(not isinstance(k, str) or not isinstance(v, str) for k, v in metadata.items()):
        return ["metadata keys and values must be strings"]
    return []
