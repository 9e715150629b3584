"""What the labeling service does, on top of its store: routing events into tasks, rules, the judge,
dataset versions, and the events that tell the rest of the platform."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmops.contracts.events import DocumentCleaned, FeedbackAccepted
from llmops.core.artifacts import ArtifactStore
from llmops.core.judge import ServingJudge
from llmops.labeling import functions, judge
from llmops.labeling.domain import feedback
from llmops.labeling.domain.agreement import AgreementMetric, AgreementResult, compute_agreement
from llmops.labeling.domain.errors import AlreadyExists, InvalidArgument, InvalidLabel
from llmops.labeling.domain.feedback import Answer, Rating
from llmops.labeling.domain.models import (
    DatasetVersion,
    DerivedTask,
    Label,
    LabelSource,
    LabelValue,
    Queue,
    QueueSpec,
    TaskInput,
    TaskSource,
    TaskType,
)
from llmops.labeling.domain.versions import build_dataset_version, version_key, write_parquet
from llmops.labeling.store import CreatedTasks, LabelingStore

log = logging.getLogger(__name__)

# Queues whose metadata names a dataset here get a task for each of its cleaned documents ("*": all).
DOCUMENTS_DATASET_KEY = "documents_dataset"
_QUEUE_CACHE_SECONDS = 5.0

InferenceLookup = Callable[[str], Awaitable[dict[str, str] | None]]


@dataclass(frozen=True)
class PairSettings:
    """Where preference pairs from feedback go, and which answers pair up (see domain.feedback)."""

    queue: str
    min_score_gap: float = 0.1
    per_feedback: int = 3
    # Only answers rated within this many days before the feedback pair up.
    lookback_days: int = 30


class Labeling:
    """The labeling workflows: events into tasks, labels announced, rules, the judge, dataset versions."""

    def __init__(
        self,
        store: LabelingStore,
        artifacts: ArtifactStore,
        *,
        judge_client: ServingJudge | None,
        inference_lookup: InferenceLookup | None,
        review_queue: str,
        review_max_score: float,
        inference_lookup_seconds: float,
        pairs: PairSettings | None = None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.judge_client = judge_client
        self.inference_lookup = inference_lookup
        self.review_queue = review_queue
        self.review_max_score = review_max_score
        self.inference_lookup_seconds = inference_lookup_seconds
        # Preference pairs need a queue (and the answer, so the inference lookup): else they are off.
        self.pairs = pairs if pairs is not None and pairs.queue else None
        self._queues: tuple[float, list[Queue]] = (0.0, [])

    def ensure_feedback_queues(self) -> None:
        """Create the review queue and, when pairs are on, the preference queue (if missing)."""
        try:
            self.store.create_queue(
                QueueSpec(
                    name=self.review_queue,
                    task_type=TaskType.CORRECTION,
                    instructions=(
                        "Users rated these answers low or corrected them: "
                        "write the answer it should have been."
                    ),
                    metadata={"created_by": "labeling", "source": "feedback"},
                )
            )
        except AlreadyExists:
            pass
        if self.pairs is None or not self.pairs.queue:
            return
        try:
            self.store.create_queue(
                QueueSpec(
                    name=self.pairs.queue,
                    task_type=TaskType.PAIRWISE_PREFERENCE,
                    instructions=(
                        "Users rated these two answers to the same prompt differently: choose the better one."
                    ),
                    metadata={"created_by": "labeling", "source": "feedback"},
                )
            )
        except AlreadyExists:
            pass

    # --- events -> tasks -----------------------------------------------------------------------

    async def _all_queues(self) -> list[Queue]:
        fetched_at, queues = self._queues
        if time.monotonic() - fetched_at > _QUEUE_CACHE_SECONDS:
            queues, token = [], ""
            while True:
                page = await asyncio.to_thread(self.store.list_queues, 500, token)
                queues.extend(page.items)
                token = page.next_page_token
                if not token:
                    break
            self._queues = (time.monotonic(), queues)
        return queues

    async def on_document(self, event: DocumentCleaned) -> None:
        """A cleaned document becomes a task in each queue that asks for its dataset."""
        for queue in await self._all_queues():
            wanted = queue.metadata.get(DOCUMENTS_DATASET_KEY)
            if wanted not in (event.dataset, "*") or queue.task_type not in (
                TaskType.CLASSIFICATION,
                TaskType.RATING,
            ):
                continue
            task = TaskInput(
                document_id=event.document_id,
                text=event.text,
                metadata={"dataset": event.dataset, "batch_id": event.batch_id, **event.metadata},
                snapshot_id=event.snapshot_id,
                source=TaskSource.DOCUMENTS,
            )
            await self.create_tasks(queue.name, [task])

    async def on_feedback(self, event: FeedbackAccepted) -> None:
        """Low scores and corrections become review tasks (a correction labels its task at once);
        two differently rated answers to one prompt become a preference task (see domain.feedback).

        Each score is recorded with its answer in this store, in the transaction that marks the
        feedback handled; pairs are found in that record. So the second feedback of a pair always
        finds the first, however close together they come (monitoring's copy of the first score may
        still be on its way)."""
        review = event.score <= self.review_max_score or bool(event.correction)
        pairs = self.pairs
        if not review and pairs is None:
            return
        row = await self._find_inference(event.request_id)
        answer = None if row is None else Answer.from_row({"request_id": event.request_id, **row})
        tasks: list[DerivedTask] = []
        if review:
            tasks.append(feedback.review_task(self.review_queue, event, answer))
        rating = None
        # A failed request's partial text is no answer to prefer or reject.
        if pairs is not None and answer is not None and answer.prompt and not answer.error:
            rating = Rating(event.feedback_id, answer, event.score, event.occurred_at)
            # This answer's mean score with this feedback's (a redelivered one counts once).
            scores = await asyncio.to_thread(self.store.answer_scores, answer.request_id)
            scores[event.feedback_id] = event.score
            mean = sum(scores.values()) / len(scores)
            others = await asyncio.to_thread(
                self.store.rated_answers,
                answer,
                score=mean,
                min_score_gap=pairs.min_score_gap,
                since=event.occurred_at - dt.timedelta(days=pairs.lookback_days),
                # Some may share this answer's text and be left out: read a few more than needed.
                limit=4 * pairs.per_feedback,
            )
            tasks.extend(
                feedback.preference_pairs(
                    pairs.queue,
                    event,
                    answer,
                    others,
                    min_score_gap=pairs.min_score_gap,
                    limit=pairs.per_feedback,
                    score=mean,
                )
            )
        if not tasks and rating is None:
            return
        # One transaction for every task and label of this feedback, its rating and its handled mark.
        results = await asyncio.to_thread(self.store.create_derived_tasks, tasks, rating=rating)
        created: dict[str, list[str]] = {}
        for task, (task_id, new) in zip(tasks, results, strict=True):
            if new:
                created.setdefault(task.queue, []).append(task_id)
        for queue, task_ids in created.items():
            await self._apply_enabled_functions(queue, task_ids)

    async def _find_inference(self, request_id: str) -> dict[str, str] | None:
        if self.inference_lookup is None:
            return None
        deadline = time.monotonic() + self.inference_lookup_seconds
        while True:
            found = await self.inference_lookup(request_id)
            if found is not None or time.monotonic() >= deadline:
                return found
            # The answer's inference.logged may still be on its way to monitoring.
            await asyncio.sleep(0.5)

    # --- tasks and labels ------------------------------------------------------------------------

    async def create_tasks(self, queue: str, inputs: Sequence[TaskInput]) -> CreatedTasks:
        created = await asyncio.to_thread(self.store.create_tasks, queue, list(inputs))
        if created.created:
            await self._apply_enabled_functions(queue, created.task_ids)
        return created

    async def submit_label(
        self, task_id: str, lease_id: str, labeler_id: str, value: LabelValue, comment: str
    ) -> Label:
        # The store queues label.created with the label (the outbox).
        return await asyncio.to_thread(
            self.store.submit_label, task_id, lease_id, labeler_id, value, comment=comment
        )

    async def agreement(
        self, queue: str, metric: AgreementMetric | None, include_pairs: bool
    ) -> AgreementResult:
        q = await asyncio.to_thread(self.store.get_queue, queue)
        units = await asyncio.to_thread(self.store.labels_for_agreement, queue)
        return compute_agreement(units, q.task_type, metric, include_pair_counts=include_pairs)

    # --- labeling functions --------------------------------------------------------------------

    async def register_function(
        self, queue: str, name: str, version: str, *, backfill: bool
    ) -> tuple[int, int]:
        lf = functions.lookup(name, version)
        q = await asyncio.to_thread(self.store.get_queue, queue)
        if q.task_type not in lf.task_types:
            kinds = ", ".join(sorted(t.value for t in lf.task_types))
            raise InvalidArgument(f"{name}@{version} labels {kinds} queues; {queue!r} is {q.task_type.value}")
        await asyncio.to_thread(self.store.register_labeling_function, queue, name, version)
        self._queues = (0.0, [])
        if not backfill:
            return 0, 0
        tasks = await asyncio.to_thread(self.store.tasks_not_labeled_by, queue, lf.labeler_id)
        return await self._apply(lf, q, [t.task_id for t in tasks], {t.task_id: t.input for t in tasks})

    async def _apply_enabled_functions(self, queue: str, task_ids: list[str]) -> None:
        q = await asyncio.to_thread(self.store.get_queue, queue)
        if not q.labeling_functions:
            return
        inputs = {}
        for task_id in dict.fromkeys(task_ids):
            inputs[task_id] = (await asyncio.to_thread(self.store.get_task, task_id)).input
        for ref in q.labeling_functions:
            name, _, version = ref.partition("@")
            await self._apply(functions.lookup(name, version), q, list(inputs), inputs)

    async def _apply(
        self, lf: functions.LabelingFunction, queue: Queue, task_ids: list[str], inputs: dict[str, TaskInput]
    ) -> tuple[int, int]:
        labeled = abstained = 0
        for task_id in task_ids:
            try:
                result = lf.apply(inputs[task_id], queue)
            except Exception:
                log.exception("labeling function %s failed on task %s", lf.labeler_id, task_id)
                abstained += 1
                continue
            if result is None:
                abstained += 1
                continue
            value, confidence = result
            try:
                # Stored with its label.created event (the outbox); a label it already gave is kept.
                await asyncio.to_thread(
                    self.store.add_programmatic_label,
                    task_id,
                    LabelSource.RULE,
                    lf.labeler_id,
                    value,
                    confidence=confidence,
                )
            except InvalidLabel as exc:
                log.warning("%s gave an invalid label on task %s: %s", lf.labeler_id, task_id, exc)
                abstained += 1
                continue
            labeled += 1
        return labeled, abstained

    # --- LLM judge -----------------------------------------------------------------------------

    async def run_judge(
        self, queue: str, template: str, version: str, model: str, limit: int
    ) -> tuple[int, int]:
        if self.judge_client is None:
            raise InvalidArgument("no serving endpoint is configured for the judge (LLMOPS_SERVING_ADDRESS)")
        q = await asyncio.to_thread(self.store.get_queue, queue)
        if q.task_type == TaskType.CORRECTION:
            raise InvalidArgument(
                "the judge labels classification, rating and pairwise queues, not corrections"
            )
        prompt = judge.resolve_prompt(q, template, version)
        labeler_id = prompt.labeler_id(model)
        tasks = await asyncio.to_thread(self.store.tasks_not_labeled_by, queue, labeler_id, max(limit, 0))
        labeled = failed = 0
        for task in tasks:
            try:
                answer = await self.judge_client.ask(judge.render(prompt, task.input, q), model)
            except Exception as exc:
                log.warning("judge call failed on task %s: %s", task.task_id, exc)
                failed += 1
                continue
            value = judge.parse(answer, q)
            if value is None:
                log.info("judge abstained on task %s (answer %r)", task.task_id, answer[:80])
                failed += 1
                continue
            await asyncio.to_thread(
                self.store.add_programmatic_label,
                task.task_id,
                LabelSource.JUDGE,
                labeler_id,
                value,
                confidence=0.5,
                metadata={"answer": answer[:500], "prompt_version": prompt.version},
            )
            labeled += 1
        return labeled, failed

    # --- dataset versions ----------------------------------------------------------------------

    async def create_dataset_version(
        self,
        dataset: str,
        queues: list[str],
        filter: dict[str, str],
        sources: list[LabelSource],
        eval_fraction: float,
        seed: int,
        description: str,
        created_after: dt.datetime | None = None,
    ) -> DatasetVersion:
        if not dataset:
            raise InvalidArgument("dataset is empty: name the dataset version")
        if not queues:
            raise InvalidArgument("queues is empty: name the queues whose labels make the version")
        tasks = await asyncio.to_thread(
            self.store.tasks_with_labels, queues, filter, sources, created_after=created_after
        )
        build = build_dataset_version(
            dataset, tasks, eval_fraction=eval_fraction, seed=seed, sources=sources, description=description
        )
        version = build.version
        key = version_key(dataset, version.version_id)
        if not self.artifacts.exists(key):
            data = await asyncio.to_thread(_parquet_bytes, build.examples, version)
            self.artifacts.write_bytes(key, data)
        # Stored with its dataset.version_created event (the outbox), once.
        return await asyncio.to_thread(
            self.store.save_dataset_version, _with_uri(version, self.artifacts.uri(key))
        )


def _parquet_bytes(examples: Sequence, version: DatasetVersion) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "version.parquet"
        write_parquet(examples, path, metadata={"version_id": version.version_id, "dataset": version.dataset})
        return path.read_bytes()


def _with_uri(version: DatasetVersion, uri: str) -> DatasetVersion:
    from dataclasses import replace

    return replace(version, uri=uri)
