"""Training jobs: submission, the one-at-a-time queue, runs on Ray, evaluation, events.

* Submitting validates the spec (``job_validation``: base model, dataset version, method, ranges,
  resources) and stores a QUEUED job; an ``idempotency_key`` seen before returns the existing job.
* The dataset version's file is where labeling says it is (its ``GetDatasetVersion``): training
  never looks into labeling's folders. A spec may instead name the file with
  ``labels["dataset_uri"]`` - useful for data made elsewhere.
* Every URL the service reads (the version's, ``dataset_uri``, ``champion_adapter_uri``) must lie
  under the platform's artifact root; anything else is refused with INVALID_ARGUMENT before
  anything is read.
* One job runs at a time, oldest first. Each step's progress is stored, published as
  ``training.progress`` and pushed to ``StreamProgress`` subscribers.
* After training, the adapter is evaluated on the eval split and compared by the judge with the
  champion. The service does not know the registry yet, so the champion is
  ``labels["champion_adapter_uri"]`` (an adapter folder URL) when given, else the base model.
* The adapter is uploaded to ``adapters/<model_name>/<job_id>/`` in the artifact store and
  ``training.completed`` is published; a failure publishes ``training.failed`` with the reason, and
  so does a cancellation (reason ``cancelled: ...``), since the job ends without an adapter.
* A job that was RUNNING when the service stopped goes back to QUEUED at the next start and
  resumes from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
import torch

from llmops.contracts.events import (
    ModelVersionRegistered,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from llmops.core.artifacts import ArtifactStore
from llmops.core.errors import FailedPrecondition
from llmops.core.sql import Page
from llmops.training.daemon_threads import in_daemon_thread
from llmops.training.dataset_versions import DatasetVersions
from llmops.training.job_validation import JobValidation
from llmops.training.judge import ServingJudge
from llmops.training.ray_runner import RunOutcome, TrainingCluster
from llmops.training.settings import Settings
from llmops.training.spec import JobState
from llmops.training.store import Job, JobStore
from llmops.training.trainer.evaluate import EvalConfig, evaluate
from llmops.training.trainer.loop import TrainConfig

log = logging.getLogger(__name__)

ACTIVE = (JobState.QUEUED, JobState.RUNNING)


class TrainingJobs:
    """The training service's behaviour, behind gRPC and the Kafka consumer (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        artifacts: ArtifactStore,
        cluster: TrainingCluster,
        datasets: DatasetVersions,
        judge: ServingJudge | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.artifacts = artifacts
        self.cluster = cluster
        self.validation = JobValidation(settings, artifacts, cluster, datasets)
        self.judge = judge
        self._subscribers: dict[str, set[asyncio.Queue[Job]]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._stopping = False
        self._current: str | None = None
        self._cancelled: set[str] = set()
        self._scheduler: asyncio.Task[None] | None = None

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Requeue the jobs a previous run left RUNNING, then start working the queue."""
        requeued = await asyncio.to_thread(self.store.requeue_running)
        for job_id in requeued:
            log.info("job %s was running when the service stopped: queued to resume", job_id)
        self._scheduler = asyncio.create_task(self._work_queue(), name="training-queue")

    async def stop(self) -> None:
        """Ask the running job to checkpoint and stop (it resumes at the next start), then stop the queue.

        Safe to call twice.
        """
        if self._stopping and (self._scheduler is None or self._scheduler.done()):
            return
        self._stopping = True
        self._wake.set()
        if self._current is not None:
            await self.cluster.request_stop(self._current, "preempt")
        if self._scheduler is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._scheduler), self.settings.stop_timeout_seconds)
            except TimeoutError:
                log.warning("the running job did not stop in time; it resumes from its last checkpoint")
                self._scheduler.cancel()
                try:
                    await self._scheduler
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                    pass
            except Exception:  # noqa: BLE001 - the queue task failed; nothing left to stop
                log.exception("the training queue ended with an error")

    # --- submission -------------------------------------------------------------------------------

    async def submit(
        self, raw: Mapping[str, Any], idempotency_key: str = "", *, zero_is_default: bool = True
    ) -> Job:
        """Validate and queue a job (see :func:`llmops.training.spec.build_spec` for ``raw``).

        Raises:
            InvalidSpec: the spec is malformed, out of range or does not fit the data / cluster.
            InvalidArgument: a URL it names lies outside the artifact root.
            NotFound: the base model or the dataset version does not exist.
            Unavailable: labeling cannot be reached to find the dataset version.
        """
        if idempotency_key and (existing := await asyncio.to_thread(self.store.by_key, idempotency_key)):
            return existing
        spec, dataset_uri, base_path = await self.validation.validate(raw, zero_is_default)
        job, created = await asyncio.to_thread(
            self.store.create, spec, idempotency_key, dataset_uri, str(base_path)
        )
        if created:
            log.info("queued job %s (%s of %s on %s)", job.job_id, spec.method, spec.base_model, dataset_uri)
            self._wake.set()
        return job

    async def on_requested(self, event: TrainingRequested) -> None:
        """``training.requested``: submit the same way as gRPC; ``request_key`` is the idempotency key."""
        raw = {
            "base_model": event.base_model,
            "dataset_version_id": event.dataset_version_id,
            "method": event.method,
            "model_name": event.model_name,
            "hyperparameters": dict(event.hyperparameters),
            "resources": dict(event.resources),
            "labels": {**event.labels, **({"reason": event.reason} if event.reason else {})},
        }
        # An event's dict holds only what the producer set: its zeros are values, not "unset".
        job = await self.submit(raw, event.request_key, zero_is_default=False)
        log.info("training.requested %s -> job %s (%s)", event.request_key, job.job_id, job.state.value)

    async def on_version_registered(self, event: ModelVersionRegistered) -> None:
        """``models.version_registered``: remember which registry version holds a job's adapter."""
        job_id = await asyncio.to_thread(self.store.set_registered_version, event.artifact_uri, event.version)
        if job_id:
            log.info("job %s is %s version %d in the registry", job_id, event.model, event.version)

    # --- queries and control ----------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        return await asyncio.to_thread(self.store.get, job_id)

    async def list(
        self, state: JobState | None, model_name: str, page_size: int, page_token: str
    ) -> Page[Job]:
        return await asyncio.to_thread(self.store.list, state, model_name, page_size, page_token)

    async def cancel(self, job_id: str, reason: str = "") -> Job:
        """QUEUED or RUNNING -> CANCELLED; a running job's workers stop at their next step.

        Raises:
            NotFound: no such job.
            FailedPrecondition: the job already ended.
        """
        job = await self.get(job_id)
        message = f"cancelled: {reason.strip() or 'by request'}"
        updated = await self._end(job_id, JobState.CANCELLED, message)
        if updated is None:
            job = await self.get(job_id)
            raise FailedPrecondition(
                f"job {job_id} is {job.state.value}: only QUEUED or RUNNING jobs can be cancelled"
            )
        if job.state is JobState.RUNNING or self._current == job_id:
            self._cancelled.add(job_id)
            await self.cluster.request_stop(job_id, "cancel")
        self._notify(updated)
        log.info("job %s %s", job_id, message)
        return updated

    async def stream(self, job_id: str) -> AsyncIterator[Job]:
        """The job now (its latest progress), then each update until it reaches a terminal state.

        Raises:
            NotFound: no such job.
        """
        queue: asyncio.Queue[Job] = asyncio.Queue()
        # Subscribe before reading, so no update falls between the read and the subscription.
        self._subscribers[job_id].add(queue)
        try:
            job = await self.get(job_id)
            yield job
            while not job.state.terminal:
                update = await queue.get()
                if update.updated_at < job.updated_at:
                    continue
                job = update
                yield job
        finally:
            self._subscribers[job_id].discard(queue)
            if not self._subscribers[job_id]:
                del self._subscribers[job_id]

    def _notify(self, job: Job) -> None:
        for queue in self._subscribers.get(job.job_id, ()):
            queue.put_nowait(job)

    # --- the queue --------------------------------------------------------------------------------

    async def _work_queue(self) -> None:
        # Events go to the store's outbox: a job may run before Kafka is connected, or while it is away.
        while not self._stopping:
            self._wake.clear()
            job = await asyncio.to_thread(self.store.next_queued)
            if job is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=5)
                except TimeoutError:
                    pass
                continue
            if not self.cluster.healthy():
                log.error("Ray is not running: job %s waits", job.job_id)
                await asyncio.sleep(5)
                continue
            self._current = job.job_id
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the queue
                if self._stopping:
                    # Torn down under the service's own stop: resumed at the next start.
                    await asyncio.to_thread(
                        self.store.transition, job.job_id, [JobState.RUNNING], JobState.QUEUED
                    )
                    continue
                log.exception("job %s failed", job.job_id)
                await self._fail(job.job_id, f"{type(exc).__name__}: {exc}")
            finally:
                self._current = None
                self._cancelled.discard(job.job_id)

    async def _run(self, queued: Job) -> None:
        job = await asyncio.to_thread(self.store.start_attempt, queued.job_id)
        if job is None:
            return  # cancelled between the pick and the start
        self._notify(job)
        spec = job.spec
        job_dir = self.settings.jobs_dir() / job.job_id
        config = TrainConfig(
            job_id=job.job_id,
            method=spec.method,
            base_model_path=job.base_model_path,
            dataset_uri=job.dataset_uri,
            output_dir=str(job_dir / "adapter"),
            checkpoint_dir=str(job_dir / "checkpoints"),
            hyperparameters=spec.hyperparameters.model_dump(mode="json"),
            checkpoint_every=self.settings.checkpoint_every,
            keep_checkpoints=self.settings.keep_checkpoints,
        )
        log.info("job %s: attempt %d as Ray Train run %s", job.job_id, job.attempts, job.ray_run_name)

        async def on_progress(progress: dict[str, Any]) -> None:
            if job.job_id in self._cancelled:
                # A cancel that came before the run's control actor existed.
                await self.cluster.request_stop(job.job_id, "cancel")
            event = TrainingProgress(
                job_id=job.job_id,
                step=int(progress["step"]),
                total_steps=int(progress["total_steps"]),
                epoch=float(progress["epoch"]),
                loss=float(progress["loss"]),
                learning_rate=float(progress["learning_rate"]),
                tokens_per_second=float(progress["tokens_per_second"]),
            )
            try:
                await asyncio.to_thread(self.store.set_progress, job.job_id, progress, event)
            except Exception:  # noqa: BLE001 - a lost progress row must not stop the training
                log.warning("job %s: cannot store progress", job.job_id, exc_info=True)
            self._notify(await self.get(job.job_id))

        outcome = await self.cluster.run(job.job_id, job.ray_run_name, config, spec.resources, on_progress)
        await self._finish(job, outcome, job_dir)

    async def _finish(self, job: Job, outcome: RunOutcome, job_dir: Path) -> None:
        current = await self.get(job.job_id)
        if current.state is JobState.CANCELLED:
            # The cancel already stored the state and published training.failed.
            shutil.rmtree(job_dir, ignore_errors=True)
            return
        result = outcome.result
        complete = not outcome.error and result is not None and result.adapter_dir is not None
        if self._stopping or (not complete and not self.cluster.healthy()):
            # Stopped by the service (or Ray went away under it): not the job's fault. It is resumed
            # from its last checkpoint at the next start.
            await asyncio.to_thread(self.store.transition, job.job_id, [JobState.RUNNING], JobState.QUEUED)
            log.info("job %s interrupted at step %s; it resumes later", job.job_id, _step(outcome))
            return
        if not complete or result is None or result.adapter_dir is None:
            await self._fail(job.job_id, outcome.error or "the training run ended without an adapter")
            return
        log.info(
            "job %s trained %d steps (resumed from %d): loss %.4f, %.0f tokens/s",
            job.job_id,
            result.step,
            result.resumed_from,
            result.train_loss,
            result.tokens_per_second,
        )
        metrics = {
            "train_loss": result.train_loss,
            "train_tokens_per_second": result.tokens_per_second,
            "train_steps": float(result.step),
        }
        try:
            metrics.update(await self._evaluate(job, result.adapter_dir, job_dir))
        except Exception as exc:  # noqa: BLE001 - an adapter without its metrics cannot pass a gate
            if job.job_id in self._cancelled or self._stopping:
                return await self._finish(job, RunOutcome(result, None, None), job_dir)
            log.exception("job %s: evaluation failed", job.job_id)
            await self._fail(job.job_id, f"evaluation failed: {type(exc).__name__}: {exc}")
            return
        if job.job_id in self._cancelled or self._stopping:
            return await self._finish(job, RunOutcome(result, None, None), job_dir)
        dropped = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if dropped:
            # NaN / inf are not JSON numbers (events would not validate); a missing metric fails gates.
            log.warning("job %s: non-finite metrics %s left out", job.job_id, ", ".join(dropped))
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        adapter_uri = await asyncio.to_thread(self._upload, job, Path(result.adapter_dir))
        # SUCCEEDED and training.completed commit together (the outbox): a job that shows SUCCEEDED
        # is announced, and so registered, also when Kafka was away at that moment.
        done = await asyncio.to_thread(
            self.store.transition,
            job.job_id,
            [JobState.RUNNING],
            JobState.SUCCEEDED,
            metrics=metrics,
            adapter_uri=adapter_uri,
            error="",
            announce=TrainingCompleted(
                job_id=job.job_id,
                model_name=job.spec.model_name,
                base_model=job.spec.base_model,
                dataset_version_id=job.spec.dataset_version_id,
                adapter_uri=adapter_uri,
                method=job.spec.method,
                params=job.spec.params(),
                metrics=metrics,
            ),
        )
        if done is None:
            return await self._finish(job, RunOutcome(result, None, None), job_dir)
        self._notify(done)
        shutil.rmtree(job_dir, ignore_errors=True)
        log.info("job %s succeeded: %s %s", job.job_id, adapter_uri, _rounded(metrics))

    async def _evaluate(self, job: Job, adapter_dir: str, job_dir: Path) -> dict[str, float]:
        spec, s = job.spec, self.settings
        judge = self.judge if self.judge is not None and await self.judge.available() else None
        champion_dir = None
        champion_uri = spec.labels.get("champion_adapter_uri", "")
        if champion_uri and not self.artifacts.contains(champion_uri):
            # Checked at submission; a job stored by an earlier release may predate the check.
            log.warning(
                "job %s: champion %s is outside the artifact root: no judge", job.job_id, champion_uri
            )
            champion_uri = ""
            judge = None
        if judge is not None and champion_uri:
            try:
                champion_dir = await asyncio.to_thread(_download_folder, champion_uri, job_dir / "champion")
            except Exception:  # noqa: BLE001 - without its champion the comparison is skipped
                log.warning(
                    "job %s: cannot fetch the champion %s: no judge", job.job_id, champion_uri, exc_info=True
                )
                judge = None
        config = EvalConfig(
            max_length=spec.hyperparameters.max_length,
            dpo_beta=spec.hyperparameters.dpo_beta,
            max_loss_examples=s.eval_max_loss_examples,
            max_generate_examples=s.eval_max_generate_examples,
            max_new_tokens=s.eval_max_new_tokens,
            batch_size=s.eval_batch_size,
            judge_timeout_seconds=s.judge_timeout_seconds,
        )
        loop = asyncio.get_running_loop()
        if s.eval_num_threads:
            torch.set_num_threads(s.eval_num_threads)
        return await in_daemon_thread(
            lambda: evaluate(
                base_model_path=job.base_model_path,
                adapter_dir=adapter_dir,
                dataset_uri=job.dataset_uri,
                method=spec.method,
                config=config,
                champion_adapter_dir=str(champion_dir) if champion_dir else None,
                judge=judge,
                judge_loop=loop,
                should_stop=lambda: job.job_id in self._cancelled or self._stopping,
            ),
            name=f"evaluate-{job.job_id}",
        )

    def _upload(self, job: Job, adapter_dir: Path) -> str:
        """Copy the adapter's files to ``adapters/<model_name>/<job_id>/``; the folder's URI."""
        prefix = f"adapters/{job.spec.model_name}/{job.job_id}"
        for path in sorted(adapter_dir.rglob("*")):
            if path.is_file():
                self.artifacts.write_bytes(
                    f"{prefix}/{path.relative_to(adapter_dir).as_posix()}", path.read_bytes()
                )
        return self.artifacts.uri(prefix)

    async def _end(self, job_id: str, state: JobState, reason: str) -> Job | None:
        """QUEUED or RUNNING -> ``state`` (FAILED or CANCELLED) with training.failed queued with it;
        None when the job had already ended."""
        return await asyncio.to_thread(
            self.store.transition,
            job_id,
            ACTIVE,
            state,
            error=reason,
            announce=TrainingFailed(job_id=job_id, reason=reason[:4000]),
        )

    async def _fail(self, job_id: str, reason: str) -> None:
        reason = reason.strip() or "unknown error"
        failed = await self._end(job_id, JobState.FAILED, reason)
        if failed is None:
            return
        log.error("job %s failed: %s", job_id, reason)
        self._notify(failed)


def _download_folder(uri: str, target: Path) -> Path:
    fs, path = fsspec.core.url_to_fs(uri.rstrip("/"))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for remote in fs.find(path):
        local = target / remote[len(path) :].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(local))
    return target


def _step(outcome: RunOutcome) -> int | str:
    return outcome.result.step if outcome.result else "?"


def _rounded(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in metrics.items()}
