"""Freezing labeled tasks into a dataset version: resolution rules, content hash, split, Parquet.

One task gives at most one :class:`Example`. The labels used for a task are those of its highest
ranked source: HUMAN (a labeler through SubmitLabel), then FEEDBACK (an end user's correction, or a
preference derived from two answers' feedback scores), then the programmatic RULE and JUDGE labels
together. So a reviewer's correction or pairwise choice always wins over what the feedback said, and
what the users said wins over rules and judges. Then, by task type:

* CLASSIFICATION: the majority label; a tie goes to the lexicographically smallest of the tied
  labels and is recorded in ``resolution`` ("tie:<label>|<label>..."). SFT form: prompt = queue
  instructions + text, completion = the label.
* RATING: the mean rating. SFT form: prompt = the prompt, completion = the rated response, with the
  mean in the ``rating`` column.
* CORRECTION: the latest correction. SFT form: prompt = the original prompt, completion = the
  corrected text.
* PAIRWISE_PREFERENCE: the majority preference; a TIE majority, or a tie between the top
  preferences, excludes the task (no preference pair). DPO form: prompt, chosen, rejected.

The version id is a sha256 over a canonical JSON serialisation of the examples (sorted by
example_id), the split parameters and the dataset name, so the same inputs always give the same id.
An example goes to eval when sha256(seed, example_id) falls below ``eval_fraction``: adding
examples never moves existing ones between train and eval.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from llmops.labeling.domain.errors import InvalidArgument
from llmops.labeling.domain.models import (
    DatasetLineage,
    DatasetVersion,
    Label,
    LabeledTask,
    LabelSource,
    Preference,
    TaskType,
)

Split = Literal["train", "eval"]

# Bumped when the canonical serialisation changes, so an old id can never collide with a new one.
HASH_FORMAT = 1
SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Example:
    """One training example, in training-ready form (see the module docstring)."""

    example_id: str
    task_id: str
    document_id: str
    queue: str
    task_type: TaskType
    prompt: str
    completion: str = ""
    chosen: str = ""
    rejected: str = ""
    # The mean rating (RATING only).
    rating: float | None = None
    # The resolved value as text: the class label, "A"/"B", the mean rating; "" for a correction
    # (the corrected text is the completion).
    label: str = ""
    # Sources of the labels used, sorted and joined by "+": "human", "rule", "judge", "judge+rule".
    label_source: str = ""
    labeler_ids: tuple[str, ...] = ()
    snapshot_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # How the value was resolved: "majority", "tie:<a>|<b>" (lexicographic pick), "mean", "latest".
    resolution: str = ""
    split: Split = "train"


@dataclass(frozen=True)
class Excluded:
    """A task that gave no example, and why."""

    task_id: str
    reason: str


@dataclass(frozen=True)
class VersionBuild:
    """A dataset version ready to write: its record (``uri`` unset) and its examples, split."""

    version: DatasetVersion
    examples: tuple[Example, ...]
    excluded: tuple[Excluded, ...] = ()
    # Ids of the labels the examples were resolved from.
    label_ids: tuple[str, ...] = ()


def training_columns(task_type: TaskType) -> tuple[str, ...]:
    """The columns a trainer reads for ``task_type``: SFT (with ``rating`` for RATING) or DPO."""
    task_type = TaskType(task_type)
    if task_type is TaskType.PAIRWISE_PREFERENCE:
        return DPO_COLUMNS
    if task_type is TaskType.RATING:
        return (*SFT_COLUMNS, "rating")
    return SFT_COLUMNS


def example_id_for(task_id: str) -> str:
    """The example id of a task's example: stable, so the split of a task never changes."""
    return hashlib.sha256(f"example\x00{task_id}".encode()).hexdigest()[:32]


def split_of(example_id: str, seed: int, eval_fraction: float) -> Split:
    """``"eval"`` when sha256(seed, example_id), read as a number in [0, 1), is below eval_fraction."""
    digest = hashlib.sha256(f"{int(seed)}\x00{example_id}".encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction else "train"


def resolve_task(
    labeled: LabeledTask, sources: Collection[LabelSource] | None = None
) -> tuple[Example | Excluded, tuple[Label, ...]]:
    """The example ``labeled`` gives (or why it gives none) and the labels it was resolved from.

    Args:
        labeled: the task, its labels oldest first, and its queue's instructions.
        sources: label sources to use; None or empty means all.
    """
    task = labeled.task
    allowed = set(sources) if sources else set(LabelSource)
    usable = [label for label in labeled.labels if label.source in allowed]
    used = _highest_ranked(usable)
    if not used:
        return Excluded(task.task_id, "no labels from the selected sources"), ()
    inp = task.input
    base = Example(
        example_id=example_id_for(task.task_id),
        task_id=task.task_id,
        document_id=inp.document_id,
        queue=task.queue,
        task_type=task.task_type,
        prompt=inp.prompt,
        label_source="+".join(sorted({LabelSource(label.source).value for label in used})),
        labeler_ids=tuple(sorted({label.labeler_id for label in used})),
        snapshot_id=inp.snapshot_id,
        metadata=dict(inp.metadata),
    )
    used_labels = tuple(used)
    task_type = TaskType(task.task_type)
    if task_type is TaskType.CLASSIFICATION:
        counts = Counter(str(label.value) for label in used)
        top = max(counts.values())
        tied = sorted(value for value, count in counts.items() if count == top)
        instructions = labeled.queue_instructions.strip()
        example = dataclasses.replace(
            base,
            prompt=f"{instructions}\n\n{inp.text}" if instructions else inp.text,
            completion=tied[0],
            label=tied[0],
            resolution="majority" if len(tied) == 1 else "tie:" + "|".join(tied),
        )
        return example, used_labels
    if task_type is TaskType.RATING:
        # fsum is exactly rounded, so the mean does not depend on the order of the labels.
        mean = math.fsum(float(label.value) for label in used) / len(used)
        example = dataclasses.replace(
            base, completion=inp.response, rating=mean, label=repr(mean), resolution="mean"
        )
        return example, used_labels
    if task_type is TaskType.CORRECTION:
        # Labels come oldest first; max keeps the last of equal timestamps.
        _, _, latest = max((label.created_at, i, label) for i, label in enumerate(used))
        example = dataclasses.replace(
            base,
            completion=str(latest.value),
            label_source=LabelSource(latest.source).value,
            labeler_ids=(latest.labeler_id,),
            resolution="latest",
        )
        return example, (latest,)
    counts = Counter(Preference(label.value) for label in used)
    top = max(counts.values())
    winners = [value for value, count in counts.items() if count == top]
    if len(winners) > 1:
        tied = "|".join(sorted(w.value for w in winners))
        return Excluded(task.task_id, f"preference tie ({tied}): no majority"), used_labels
    if winners[0] is Preference.TIE:
        return Excluded(task.task_id, "the majority preference is TIE"), used_labels
    a_wins = winners[0] is Preference.A
    example = dataclasses.replace(
        base,
        chosen=inp.candidate_a if a_wins else inp.candidate_b,
        rejected=inp.candidate_b if a_wins else inp.candidate_a,
        label=winners[0].value,
        resolution="majority",
    )
    return example, used_labels


# Sources by rank, highest first; labels of the first rank present are the ones used.
SOURCE_RANKS: tuple[frozenset[LabelSource], ...] = (
    frozenset({LabelSource.HUMAN}),
    frozenset({LabelSource.FEEDBACK}),
    frozenset({LabelSource.RULE, LabelSource.JUDGE}),
)


def _highest_ranked(labels: Sequence[Label]) -> list[Label]:
    for rank in SOURCE_RANKS:
        found = [label for label in labels if label.source in rank]
        if found:
            return found
    return []


def compute_version_id(dataset: str, examples: Iterable[Example], eval_fraction: float, seed: int) -> str:
    """sha256 (hex) over the canonical serialisation of the sorted examples and split parameters."""
    payload = {
        "format": HASH_FORMAT,
        "dataset": dataset,
        "eval_fraction": float(eval_fraction),
        "seed": int(seed),
        # The split is derived from the other fields, so it is left out of the examples.
        "examples": [_canonical(e) for e in sorted(examples, key=lambda e: e.example_id)],
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def build_dataset_version(
    dataset: str,
    tasks: Sequence[LabeledTask],
    *,
    eval_fraction: float,
    seed: int,
    sources: Collection[LabelSource] | None = None,
    description: str = "",
    now: dt.datetime | None = None,
) -> VersionBuild:
    """Resolve ``tasks`` into examples, split them and compute the version's id and lineage.

    Args:
        dataset: dataset name (part of the hash).
        tasks: labeled tasks, e.g. from ``LabelingStore.tasks_with_labels``; one task type only.
        eval_fraction: share of examples held out, in [0, 1).
        seed: seed of the split.
        sources: label sources to use; None or empty means all.
        description: kept on the record; not part of the hash.
        now: creation time of the record (defaults to now, UTC).

    Raises:
        InvalidArgument: bad parameters, mixed task types, or no task giving an example.
    """
    if not dataset.strip():
        raise InvalidArgument("dataset name is empty")
    if not (isinstance(eval_fraction, int | float) and 0.0 <= eval_fraction < 1.0):
        raise InvalidArgument(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    task_types = sorted({TaskType(t.task.task_type).value for t in tasks})
    if len(task_types) > 1:
        raise InvalidArgument(f"a dataset version holds one task type; the selected tasks have {task_types}")
    examples: list[Example] = []
    excluded: list[Excluded] = []
    used_labels: list[Label] = []
    for labeled in tasks:
        outcome, labels = resolve_task(labeled, sources)
        if isinstance(outcome, Excluded):
            excluded.append(outcome)
        else:
            examples.append(outcome)
            used_labels.extend(labels)
    if not examples:
        reasons = Counter(e.reason for e in excluded)
        detail = ", ".join(f"{count} x {reason}" for reason, count in sorted(reasons.items()))
        raise InvalidArgument(
            f"no labeled example for dataset {dataset!r} from {len(tasks)} task(s)"
            + (f": {detail}" if detail else "")
        )
    examples.sort(key=lambda e: e.example_id)
    examples = [dataclasses.replace(e, split=split_of(e.example_id, seed, eval_fraction)) for e in examples]
    version_id = compute_version_id(dataset, examples, eval_fraction, seed)
    eval_count = sum(1 for e in examples if e.split == "eval")
    lineage = DatasetLineage(
        snapshot_ids=tuple(sorted({e.snapshot_id for e in examples if e.snapshot_id})),
        label_ids_count=len(used_labels),
        labeler_ids=tuple(sorted({label.labeler_id for label in used_labels})),
        queues=tuple(sorted({e.queue for e in examples})),
    )
    version = DatasetVersion(
        version_id=version_id,
        dataset=dataset,
        task_type=TaskType(task_types[0]),
        train_count=len(examples) - eval_count,
        eval_count=eval_count,
        eval_fraction=float(eval_fraction),
        seed=int(seed),
        created_at=now or dt.datetime.now(dt.UTC),
        lineage=lineage,
        description=description,
    )
    return VersionBuild(
        version=version,
        examples=tuple(examples),
        excluded=tuple(excluded),
        label_ids=tuple(label.label_id for label in used_labels),
    )


def version_key(dataset: str, version_id: str) -> str:
    """Relative location of a version's Parquet file under an artifact root."""
    return f"datasets/{dataset}/{version_id}.parquet"


PARQUET_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("document_id", pa.string()),
        pa.field("queue", pa.string()),
        pa.field("task_type", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("completion", pa.string()),
        pa.field("chosen", pa.string()),
        pa.field("rejected", pa.string()),
        pa.field("rating", pa.float64()),
        pa.field("label", pa.string()),
        pa.field("label_source", pa.string()),
        pa.field("labeler_ids", pa.list_(pa.string())),
        pa.field("snapshot_id", pa.string()),
        pa.field("metadata", pa.map_(pa.string(), pa.string())),
        pa.field("resolution", pa.string()),
        pa.field("split", pa.string(), nullable=False),
    ]
)


def write_parquet(
    examples: Sequence[Example], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> bool:
    """Write ``examples`` (with their ``split`` column) to one Parquet file, atomically.

    A version is immutable: when ``path`` exists nothing is written. Otherwise the file is written
    next to ``path`` under a temporary name and renamed into place, so readers never see a partial
    file; two concurrent writers of one version write the same content, so the last rename is
    harmless.

    Args:
        examples: rows to write, in order.
        path: target file.
        metadata: extra key/value pairs for the file's schema metadata (e.g. version_id, dataset).

    Returns:
        True when the file was written, False when it already existed.
    """
    target = Path(path)
    if target.exists():
        return False
    columns: dict[str, list[object]] = {name: [] for name in PARQUET_SCHEMA.names}
    for e in examples:
        row = _canonical(e)
        row["split"] = e.split
        row["metadata"] = sorted(e.metadata.items())
        for name in PARQUET_SCHEMA.names:
            columns[name].append(row[name])
    schema = PARQUET_SCHEMA.with_metadata({k: v for k, v in (metadata or {}).items()})
    table = pa.Table.from_pydict(columns, schema=schema)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def read_parquet(path: str | os.PathLike[str]) -> list[Example]:
    """The examples of a file written by :func:`write_parquet`."""
    rows = pq.read_table(path, schema=PARQUET_SCHEMA).to_pylist()
    return [
        Example(
            example_id=r["example_id"],
            task_id=r["task_id"],
            document_id=r["document_id"],
            queue=r["queue"],
            task_type=TaskType(r["task_type"]),
            prompt=r["prompt"],
            completion=r["completion"],
            chosen=r["chosen"],
            rejected=r["rejected"],
            rating=r["rating"],
            label=r["label"],
            label_source=r["label_source"],
            labeler_ids=tuple(r["labeler_ids"] or ()),
            snapshot_id=r["snapshot_id"],
            metadata=dict(r["metadata"] or ()),
            resolution=r["resolution"],
            split=r["split"],
        )
        for r in rows
    ]


def _canonical(example: Example) -> dict[str, object]:
    """The example as JSON-ready data, without ``split``."""
    return {
        "example_id": example.example_id,
        "task_id": example.task_id,
        "document_id": example.document_id,
        "queue": example.queue,
        "task_type": TaskType(example.task_type).value,
        "prompt": example.prompt,
        "completion": example.completion,
        "chosen": example.chosen,
        "rejected": example.rejected,
        "rating": example.rating,
        "label": example.label,
        "label_source": example.label_source,
        "labeler_ids": list(example.labeler_ids),
        "snapshot_id": example.snapshot_id,
        "metadata": dict(example.metadata),
        "resolution": example.resolution,
    }
