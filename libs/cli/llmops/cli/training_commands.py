"""``llmops train``, ``llmops jobs ...`` and ``llmops datasets ...``: fine-tuning jobs and the dataset
versions they train on (TrainingService and LabelingService)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated

import grpc
import typer
from rich.table import Table

from llmops.cli import client
from llmops.cli.client import console, err, number, when
from llmops.core.model_assets import SMOLLM2_NAME

if TYPE_CHECKING:
    from llmops.contracts.rpc.labeling.v1 import labeling_pb2
    from llmops.contracts.rpc.training.v1 import training_pb2, training_pb2_grpc

jobs_app = typer.Typer(help="Fine-tuning jobs: list, show, cancel, follow.", no_args_is_help=True)
datasets_app = typer.Typer(help="Dataset versions frozen from labeled queues.", no_args_is_help=True)

# Exit status after Ctrl-C, as a shell reports a process ended by SIGINT.
INTERRUPTED = 130


class Method(enum.StrEnum):
    sft = "sft"
    dpo = "dpo"


class State(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# --- pure parts (no I/O) ------------------------------------------------------------------------


def build_submit_request(
    dataset_version: str,
    model: str,
    *,
    method: str = "sft",
    base_model: str = SMOLLM2_NAME,
    lora_rank: int = 0,
    lora_alpha: float = 0.0,
    lora_dropout: float = 0.0,
    target_modules: str = "",
    learning_rate: float = 0.0,
    epochs: int = 0,
    batch_size: int = 0,
    max_length: int = 0,
    max_steps: int = 0,
    seed: int = 0,
    dpo_beta: float = 0.0,
    workers: int = 0,
    cpus_per_worker: float = 0.0,
    gpus_per_worker: float = 0.0,
    idempotency_key: str = "",
) -> training_pb2.SubmitJobRequest:
    """The SubmitJobRequest for ``llmops train``; zeros and empty strings leave the server's default.

    Raises:
        ValueError: an unknown method, or an empty name in ``target_modules``.
    """
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    methods = {"sft": pb.TRAINING_METHOD_SFT_LORA, "dpo": pb.TRAINING_METHOD_DPO_LORA}
    if method not in methods:
        raise ValueError(f"--method must be sft or dpo, got {method!r}")
    modules = [m.strip() for m in target_modules.split(",")] if target_modules.strip() else []
    if any(not m for m in modules):
        raise ValueError(f"--target-modules {target_modules!r} has an empty name; write e.g. q_proj,v_proj")
    return pb.SubmitJobRequest(
        spec=pb.JobSpec(
            base_model=base_model,
            dataset_version_id=dataset_version,
            method=methods[method],
            model_name=model,
            hyperparameters=pb.Hyperparameters(
                lora_rank=lora_rank,
                lora_alpha=lora_alpha,
                lora_dropout=lora_dropout,
                target_modules=modules,
                learning_rate=learning_rate,
                epochs=epochs,
                batch_size=batch_size,
                max_length=max_length,
                max_steps=max_steps,
                seed=seed,
                dpo_beta=dpo_beta,
            ),
            resources=pb.Resources(
                num_workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker
            ),
        ),
        idempotency_key=idempotency_key,
    )


def state_name(state: int) -> str:
    """``JOB_STATE_SUCCEEDED`` -> ``SUCCEEDED``."""
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    return pb.JobState.Name(state).removeprefix("JOB_STATE_") if state in pb.JobState.values() else str(state)


def method_name(method: int) -> str:
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    return {pb.TRAINING_METHOD_SFT_LORA: "sft", pb.TRAINING_METHOD_DPO_LORA: "dpo"}.get(method, "-")


def is_terminal(state: int) -> bool:
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    return state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


def progress_text(update: training_pb2.Progress) -> str:
    """The numbers beside the bar: loss, learning rate, throughput (and eval loss once known)."""
    if not update.step:
        return state_name(update.state).lower()
    parts = [
        f"loss {update.loss:.4f}",
        f"lr {update.learning_rate:.2e}",
        f"{update.tokens_per_second:,.0f} tok/s",
    ]
    if update.epoch:
        parts.append(f"epoch {update.epoch:.2f}")
    if update.eval_loss:
        parts.append(f"eval_loss {update.eval_loss:.4f}")
    return "  ".join(parts)


def job_row(job: training_pb2.Job) -> tuple[str, ...]:
    """One line of ``llmops jobs list``: id, model, method, state, step/total, created, dataset version."""
    p = job.latest_progress
    steps = f"{p.step}/{p.total_steps}" if p.total_steps else (str(p.step) if p.step else "-")
    return (
        job.job_id,
        job.spec.model_name,
        method_name(job.spec.method),
        state_name(job.state),
        steps,
        when(job.created_at),
        job.spec.dataset_version_id,
    )


def job_fields(job: training_pb2.Job) -> list[tuple[str, str]]:
    """The (field, value) lines of ``llmops jobs show``, metrics aside."""
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    hp = job.spec.hyperparameters
    res = job.spec.resources
    hyper = (
        f"lora_rank={hp.lora_rank} lora_alpha={number(hp.lora_alpha)} lora_dropout={number(hp.lora_dropout)} "
        f"target_modules={','.join(hp.target_modules) or '-'} learning_rate={hp.learning_rate:g} "
        f"epochs={hp.epochs} batch_size={hp.batch_size} max_length={hp.max_length} "
        f"max_steps={hp.max_steps} seed={hp.seed}"
    )
    if job.spec.method == pb.TRAINING_METHOD_DPO_LORA:
        hyper += f" dpo_beta={number(hp.dpo_beta)}"
    p = job.latest_progress
    fields = [
        ("job", job.job_id),
        ("state", state_name(job.state)),
        ("model", job.spec.model_name),
        ("method", method_name(job.spec.method)),
        ("base model", job.spec.base_model),
        ("dataset version", job.spec.dataset_version_id),
        ("hyperparameters", hyper),
        (
            "resources",
            f"workers={res.num_workers} cpus_per_worker={number(res.cpus_per_worker)} "
            f"gpus_per_worker={number(res.gpus_per_worker)}",
        ),
        ("progress", f"step {p.step}/{p.total_steps}  {progress_text(p)}" if p.step else "-"),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("adapter", job.adapter_uri or "-"),
    ]
    if job.registered_version:
        fields.append(("registered", f"{job.spec.model_name} version {job.registered_version}"))
    if job.error:
        fields.append(("error", job.error))
    if job.idempotency_key:
        fields.append(("idempotency key", job.idempotency_key))
    if job.ray_job_id:
        fields.append(("ray job", job.ray_job_id))
    for key, value in sorted(job.spec.labels.items()):
        fields.append((f"label {key}", value))
    return fields


def metrics_table(metrics: dict[str, float] | object) -> Table:
    table = Table("metric", "value")
    for name, value in sorted(dict(metrics).items()):  # type: ignore[call-overload]
        table.add_row(name, number(value))
    return table


# --- commands -----------------------------------------------------------------------------------


def _training_stub(channel: grpc.Channel) -> training_pb2_grpc.TrainingServiceStub:
    from llmops.contracts.rpc.training.v1 import training_pb2_grpc

    return training_pb2_grpc.TrainingServiceStub(channel)


def train(
    dataset_version: Annotated[str, typer.Option(help="DatasetVersion id from `llmops datasets create`.")],
    model: Annotated[str, typer.Option(help="Registry model name the adapter is registered under.")],
    method: Annotated[Method, typer.Option(help="sft (prompt/completion) or dpo (chosen/rejected).")] = (
        Method.sft
    ),
    base_model: Annotated[str, typer.Option(help="Base model: a packaged model name or a path.")] = (
        SMOLLM2_NAME
    ),
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (0 = server default).")] = 0,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha (0 = server default).")] = 0.0,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout (0 = server default).")] = 0.0,
    target_modules: Annotated[
        str, typer.Option(help="Comma-separated module names, e.g. q_proj,v_proj (default: all linear).")
    ] = "",
    learning_rate: Annotated[float, typer.Option(help="0 = server default.")] = 0.0,
    epochs: Annotated[int, typer.Option(help="0 = server default.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Per-worker batch size (0 = server default).")] = 0,
    max_length: Annotated[int, typer.Option(help="Tokens per example (0 = server default).")] = 0,
    max_steps: Annotated[int, typer.Option(help="Cap on optimiser steps; overrides --epochs when > 0.")] = 0,
    seed: Annotated[int, typer.Option(help="0 = server default.")] = 0,
    dpo_beta: Annotated[float, typer.Option(help="DPO temperature (0 = server default).")] = 0.0,
    workers: Annotated[int, typer.Option(help="Ray Train workers (0 = server default).")] = 0,
    cpus_per_worker: Annotated[float, typer.Option(help="0 = server default.")] = 0.0,
    gpus_per_worker: Annotated[float, typer.Option(help="> 0 trains on GPUs.")] = 0.0,
    idempotency_key: Annotated[
        str, typer.Option(help="A retried submission with the same key returns the same job.")
    ] = "",
    detach: Annotated[bool, typer.Option(help="Print the job id and return without following it.")] = False,
) -> None:
    """Submit a LoRA fine-tuning job and follow its progress until it finishes."""
    try:
        request = build_submit_request(
            dataset_version,
            model,
            method=method.value,
            base_model=base_model,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=target_modules,
            learning_rate=learning_rate,
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            max_steps=max_steps,
            seed=seed,
            dpo_beta=dpo_beta,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            idempotency_key=idempotency_key,
        )
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    with client.channel("training") as channel:
        stub = _training_stub(channel)
        try:
            job = stub.SubmitJob(request, timeout=120)
        except grpc.RpcError as exc:
            client.fail(exc)
        console.print(f"job {job.job_id}: {state_name(job.state)}", highlight=False)
        if detach:
            console.print(f"follow it with: llmops jobs follow {job.job_id}", highlight=False)
            return
        _follow(stub, job.job_id)


def _follow(stub: training_pb2_grpc.TrainingServiceStub, job_id: str) -> None:
    """Show StreamProgress as a bar until the job ends, then its outcome; exit 1 unless it succeeded."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=err,
    )
    stream = stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id))
    try:
        with progress:
            task = progress.add_task("queued", total=None, stats="")
            for update in stream:
                progress.update(
                    task,
                    description=state_name(update.state).lower(),
                    completed=update.step,
                    total=update.total_steps or None,
                    stats=progress_text(update) if update.step else "",
                )
    except KeyboardInterrupt:
        stream.cancel()
        err.print(
            f"stopped following; job {job_id} keeps running on the server.\n"
            f"  follow it again: llmops jobs follow {job_id}\n"
            f"  cancel it:       llmops jobs cancel {job_id}",
            highlight=False,
        )
        raise typer.Exit(INTERRUPTED) from None
    except grpc.RpcError as exc:
        err.print(f"lost the progress stream of job {job_id}; follow it again: llmops jobs follow {job_id}")
        client.fail(exc)
    try:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id))
    except grpc.RpcError as exc:
        client.fail(exc)
    _print_outcome(job)


def _print_outcome(job: training_pb2.Job) -> None:
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    state = state_name(job.state)
    console.print(f"job {job.job_id}: {state}", highlight=False)
    if job.metrics:
        console.print(metrics_table(job.metrics))
    if job.adapter_uri:
        console.print(f"adapter: {job.adapter_uri}", highlight=False, soft_wrap=True)
    if job.state == pb.JOB_STATE_SUCCEEDED:
        if job.registered_version:
            console.print(f"registered: {job.spec.model_name} version {job.registered_version}")
        else:
            console.print(
                f"the registry registers it as a new version of {job.spec.model_name} shortly: "
                f"llmops registry versions {job.spec.model_name}",
                highlight=False,
            )
        return
    if not is_terminal(job.state):
        err.print(
            f"[yellow]the progress stream ended while job {job.job_id} is {state}[/]; "
            f"follow it again: llmops jobs follow {job.job_id}",
            highlight=False,
        )
        raise typer.Exit(1)
    err.print(f"[red]job {job.job_id} {state}:[/] {job.error or 'no reason given'}", highlight=False)
    raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    state: Annotated[State | None, typer.Option(help="Only jobs in this state.")] = None,
    model: Annotated[str, typer.Option(help="Only jobs of this registry model name.")] = "",
    limit: Annotated[int, typer.Option(min=1, help="Jobs to show at most, newest first.")] = 20,
) -> None:
    """List training jobs, newest first."""
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    wanted = pb.JobState.Value(f"JOB_STATE_{state.value.upper()}") if state else pb.JOB_STATE_UNSPECIFIED
    with client.channel("training") as channel:
        stub = _training_stub(channel)
        try:
            jobs, more_jobs = client.collect_pages(
                lambda size, token: stub.ListJobs(
                    pb.ListJobsRequest(state=wanted, model_name=model, page_size=size, page_token=token)
                ),
                "jobs",
                limit,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("job", "model", "method", "state", "step", "created", "dataset version")
    for job in jobs[:limit]:
        table.add_row(*job_row(job))
    console.print(table)
    more = " (more: raise --limit)" if more_jobs else ""
    console.print(f"{len(jobs[:limit])} job(s){more}")


@jobs_app.command("show")
def jobs_show(job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Show one job: its spec, progress, metrics, adapter and error."""
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    with client.channel("training") as channel:
        try:
            job = _training_stub(channel).GetJob(pb.GetJobRequest(job_id=job_id), timeout=30)
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("field", "value", show_header=False)
    for name, value in job_fields(job):
        table.add_row(name, value)
    console.print(table)
    if job.metrics:
        console.print(metrics_table(job.metrics))


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    reason: Annotated[str, typer.Option(help="Recorded as the job's error.")] = "",
) -> None:
    """Cancel a queued or running job."""
    from llmops.contracts.rpc.training.v1 import training_pb2 as pb

    reason = reason or f"cancelled by {client.actor()} from the CLI"
    with client.channel("training") as channel:
        try:
            job = _training_stub(channel).CancelJob(
                pb.CancelJobRequest(job_id=job_id, reason=reason), timeout=60
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    console.print(f"job {job.job_id}: {state_name(job.state)} ({job.error})", highlight=False)


@jobs_app.command("follow")
def jobs_follow(job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Follow a job's progress until it finishes (Ctrl-C stops following, not the job)."""
    with client.channel("training") as channel:
        _follow(_training_stub(channel), job_id)


# --- dataset versions -----------------------------------------------------------------------------


def dataset_version_fields(version: labeling_pb2.DatasetVersion) -> list[tuple[str, str]]:
    """The (field, value) lines of ``llmops datasets show``."""
    from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb

    task_type = (
        pb.TaskType.Name(version.task_type).removeprefix("TASK_TYPE_").lower()
        if version.task_type in pb.TaskType.values()
        else str(version.task_type)
    )
    lineage = version.lineage
    fields = [
        ("version", version.version_id),
        ("dataset", version.dataset),
        ("task type", task_type),
        ("train / eval", f"{version.train_count} / {version.eval_count}"),
        ("eval fraction", number(version.eval_fraction)),
        ("seed", str(version.seed)),
        ("uri", version.uri),
        ("created", when(version.created_at)),
        ("queues", ", ".join(lineage.queues) or "-"),
        ("snapshots", ", ".join(lineage.snapshot_ids) or "-"),
        ("labels used", str(lineage.label_ids_count)),
        ("labelers", ", ".join(lineage.labeler_ids) or "-"),
    ]
    if version.description:
        fields.append(("description", version.description))
    return fields


def _labeling_stub(channel: grpc.Channel):  # noqa: ANN202 - LabelingServiceStub, imported lazily
    from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc

    return labeling_pb2_grpc.LabelingServiceStub(channel)


class Source(enum.StrEnum):
    human = "human"
    rule = "rule"
    judge = "judge"


@datasets_app.command("create")
def datasets_create(
    name: Annotated[str, typer.Argument(help="The dataset's name.")],
    queue: Annotated[list[str], typer.Option("--queue", "-q", help="A labeling queue to include (repeat).")],
    eval_fraction: Annotated[float, typer.Option(help="Share held out for evaluation, in [0, 1).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic train/eval split.")] = 0,
    source: Annotated[
        list[Source] | None, typer.Option("--source", help="Label sources to include (default: all).")
    ] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Freeze the labels of QUEUEs into a content-hashed dataset version (train/eval split)."""
    from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb

    sources = [pb.LabelSource.Value(f"LABEL_SOURCE_{s.value.upper()}") for s in source or []]
    request = pb.CreateDatasetVersionRequest(
        dataset=name,
        queues=queue,
        sources=sources,
        eval_fraction=eval_fraction,
        seed=seed,
        description=description,
    )
    with client.channel("labeling") as channel:
        try:
            version = _labeling_stub(channel).CreateDatasetVersion(request, timeout=300)
        except grpc.RpcError as exc:
            client.fail(exc)
    console.print(
        f"dataset version {version.version_id}: {version.train_count} train, {version.eval_count} eval",
        highlight=False,
    )
    console.print(
        f"train on it: llmops train --dataset-version {version.version_id} --model NAME", highlight=False
    )


@datasets_app.command("list")
def datasets_list(
    name: Annotated[str, typer.Argument(help="The dataset's name.")],
    limit: Annotated[int, typer.Option(min=1, help="Versions to show at most, newest first.")] = 20,
) -> None:
    """List the versions of a dataset, newest first."""
    from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb

    with client.channel("labeling") as channel:
        stub = _labeling_stub(channel)
        try:
            versions, more = client.collect_pages(
                lambda size, token: stub.ListDatasetVersions(
                    pb.ListDatasetVersionsRequest(dataset=name, page_size=size, page_token=token)
                ),
                "versions",
                limit,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("version", "train", "eval", "queues", "created", "description")
    for v in versions[:limit]:
        table.add_row(
            v.version_id,
            str(v.train_count),
            str(v.eval_count),
            ", ".join(v.lineage.queues),
            when(v.created_at),
            v.description,
        )
    console.print(table)
    console.print(f"{len(versions[:limit])} version(s) of {name}{' (more: raise --limit)' if more else ''}")


@datasets_app.command("show")
def datasets_show(version_id: Annotated[str, typer.Argument(help="The dataset version's id.")]) -> None:
    """Show one dataset version: counts, split, where its files are, what it was made from."""
    from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb

    with client.channel("labeling") as channel:
        try:
            version = _labeling_stub(channel).GetDatasetVersion(
                pb.GetDatasetVersionRequest(version_id=version_id), timeout=30
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("field", "value", show_header=False)
    for field_name, value in dataset_version_fields(version):
        table.add_row(field_name, value)
    console.print(table)
