"""The CLI's model commands without servers: gate rules, the SubmitJobRequest built from options, the
progress and lineage rendering, following a job (fake stub), and bad arguments that exit 2."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from typer.testing import CliRunner

from llmops.cli import training_commands
from llmops.cli.main import app
from llmops.cli.registry_commands import (
    GateRuleError,
    change_text,
    gate_text,
    lineage_rows,
    parse_gate,
    parse_gate_rule,
    rule_text,
    version_row,
    version_selector,
)
from llmops.cli.training_commands import (
    INTERRUPTED,
    build_submit_request,
    dataset_version_fields,
    job_fields,
    job_row,
    progress_text,
)
from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as lpb
from llmops.contracts.rpc.registry.v1 import registry_pb2 as rpb
from llmops.contracts.rpc.training.v1 import training_pb2 as tpb
from llmops.core.model_assets import SMOLLM2_NAME
from llmops.registry.domain.gates import parse_rule as server_parse_rule
from llmops.registry.grpc_server import COMPARATORS

runner = CliRunner()

# --- gate rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "comparator", "threshold"),
    [
        ("exact_match>=0.8", "exact_match", rpb.COMPARATOR_GTE, 0.8),
        (" eval_loss <= 2 ", "eval_loss", rpb.COMPARATOR_LTE, 2.0),
        ("rouge-l>0", "rouge-l", rpb.COMPARATOR_GT, 0.0),
        ("eval/toxicity<1e-3", "eval/toxicity", rpb.COMPARATOR_LT, 0.001),
        ("perplexity >= -5", "perplexity", rpb.COMPARATOR_GTE, -5.0),
    ],
)
def test_gate_rules_parse_into_the_proto_enum(
    text: str, metric: str, comparator: int, threshold: float
) -> None:
    (rule,) = parse_gate_rule(text)
    assert (rule.metric, rule.comparator, rule.threshold) == (metric, comparator, threshold)
    # The registry reads the same text the same way (its own parser, used for its default gate).
    server = server_parse_rule(text)
    assert (server.metric, server.comparator, server.threshold) == (
        metric,
        COMPARATORS.require(comparator, "comparator"),
        threshold,
    )


def test_equality_becomes_a_closed_range_because_the_registry_has_no_equality_comparator() -> None:
    rules = parse_gate_rule("judge_decided==0")
    assert [(r.metric, r.comparator, r.threshold) for r in rules] == [
        ("judge_decided", rpb.COMPARATOR_GTE, 0.0),
        ("judge_decided", rpb.COMPARATOR_LTE, 0.0),
    ]


def test_several_rules_keep_their_order_and_print_back() -> None:
    rules = parse_gate(["exact_match>=0.8", "eval_loss<=2", "rouge_l>0.25"])
    assert [rule_text(r) for r in rules] == ["exact_match >= 0.8", "eval_loss <= 2", "rouge_l > 0.25"]
    assert gate_text(rules) == "exact_match >= 0.8, eval_loss <= 2, rouge_l > 0.25"
    assert gate_text([]) == "none"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("exact_match", "is not METRIC OP VALUE"),
        ("exact_match=0.8", "is not METRIC OP VALUE"),
        ("exact_match=>0.8", "is not METRIC OP VALUE"),
        (">=0.8", "is not METRIC OP VALUE"),
        ("exact match>=0.8", "is not METRIC OP VALUE"),
        ("", "is not METRIC OP VALUE"),
        ("exact_match>=high", "'high' is not a number"),
        ("exact_match>=", "is not METRIC OP VALUE"),
        ("exact$match>=0.5", "not a metric name"),
        ("eval_loss<=nan", "finite number"),
        ("eval_loss<=inf", "finite number"),
    ],
)
def test_bad_gate_rules_are_refused_naming_the_rule(text: str, complaint: str) -> None:
    with pytest.raises(GateRuleError) as caught:
        parse_gate_rule(text)
    assert complaint in str(caught.value) and repr(text) in str(caught.value)


@pytest.mark.parametrize("command", ["set-gate", "create-model"])
def test_a_bad_gate_option_exits_2_before_calling_the_registry(command: str) -> None:
    extra = ["--base-model", "x"] if command == "create-model" else []
    # No API key and no server: the rule is checked first.
    result = runner.invoke(
        app, ["registry", command, "bot", *extra, "--gate", "exact_match>=0.8", "--gate", "eval_loss=<2"]
    )
    assert result.exit_code == 2
    assert "bad --gate" in result.output and "'eval_loss=<2'" in result.output


def test_set_gate_needs_rules_or_clear() -> None:
    result = runner.invoke(app, ["registry", "set-gate", "bot"])
    assert result.exit_code == 2 and "--clear" in result.output


# --- submitting a job -----------------------------------------------------------------------------


def test_submit_request_leaves_unset_options_to_the_server() -> None:
    request = build_submit_request("dv1", "cards-bot")
    spec = request.spec
    assert spec.dataset_version_id == "dv1" and spec.model_name == "cards-bot"
    assert spec.method == tpb.TRAINING_METHOD_SFT_LORA and spec.base_model == SMOLLM2_NAME
    # Zero values mean "server default" in the proto.
    assert spec.hyperparameters == tpb.Hyperparameters()
    assert spec.resources == tpb.Resources()
    assert request.idempotency_key == ""


def test_submit_request_carries_every_option() -> None:
    request = build_submit_request(
        "dv1",
        "tiles-bot",
        method="dpo",
        base_model="/models/base",
        lora_rank=16,
        lora_alpha=32,
        lora_dropout=0.1,
        target_modules=" q_proj, v_proj ",
        learning_rate=1e-3,
        epochs=2,
        batch_size=4,
        max_length=64,
        max_steps=4,
        seed=7,
        dpo_beta=0.5,
        workers=2,
        cpus_per_worker=1,
        gpus_per_worker=0.5,
        idempotency_key="k-1",
    )
    spec = request.spec
    hp = spec.hyperparameters
    assert spec.method == tpb.TRAINING_METHOD_DPO_LORA and spec.base_model == "/models/base"
    assert list(hp.target_modules) == ["q_proj", "v_proj"]
    assert (hp.lora_rank, hp.lora_alpha, hp.lora_dropout, hp.learning_rate) == (16, 32.0, 0.1, 1e-3)
    assert (hp.epochs, hp.batch_size, hp.max_length, hp.max_steps, hp.seed, hp.dpo_beta) == (
        2,
        4,
        64,
        4,
        7,
        0.5,
    )
    assert (spec.resources.num_workers, spec.resources.cpus_per_worker, spec.resources.gpus_per_worker) == (
        2,
        1.0,
        0.5,
    )
    assert request.idempotency_key == "k-1"


def test_submit_request_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="sft or dpo"):
        build_submit_request("dv1", "m", method="ppo")
    with pytest.raises(ValueError, match="empty name"):
        build_submit_request("dv1", "m", target_modules="q_proj,,v_proj")


def test_train_with_an_unknown_method_exits_2() -> None:
    result = runner.invoke(app, ["train", "--dataset-version", "dv1", "--model", "m", "--method", "ppo"])
    assert result.exit_code == 2 and "ppo" in result.output


# --- progress -------------------------------------------------------------------------------------


def _progress(step: int, state: int = tpb.JOB_STATE_RUNNING, **kw: float) -> tpb.Progress:
    values = {"loss": 2.5, "learning_rate": 2e-3, "tokens_per_second": 1234.4, "total_steps": 4}
    values.update(kw)
    return tpb.Progress(job_id="j1", step=step, state=state, **values)  # type: ignore[arg-type]


def test_progress_text_shows_loss_learning_rate_and_throughput() -> None:
    assert progress_text(tpb.Progress(state=tpb.JOB_STATE_QUEUED)) == "queued"
    text = progress_text(_progress(2, epoch=0.5, eval_loss=0))
    assert text == "loss 2.5000  lr 2.00e-03  1,234 tok/s  epoch 0.50"
    assert "eval_loss 1.8000" in progress_text(_progress(4, eval_loss=1.8))


def _job(state: int, **kw: object) -> tpb.Job:
    return tpb.Job(
        job_id="j1",
        state=state,
        spec=tpb.JobSpec(
            model_name="cards-bot",
            method=tpb.TRAINING_METHOD_SFT_LORA,
            dataset_version_id="dv1",
            base_model=SMOLLM2_NAME,
            hyperparameters=tpb.Hyperparameters(lora_rank=8, max_steps=4, target_modules=["all-linear"]),
            resources=tpb.Resources(num_workers=1, cpus_per_worker=1),
        ),
        latest_progress=_progress(4, state=state),
        **kw,  # type: ignore[arg-type]
    )


def test_job_rows_and_fields() -> None:
    job = _job(tpb.JOB_STATE_FAILED, error="worker died", metrics={"train_loss": 1.5})
    assert job_row(job) == ("j1", "cards-bot", "sft", "FAILED", "4/4", "-", "dv1")
    fields = dict(job_fields(job))
    assert fields["state"] == "FAILED" and fields["error"] == "worker died"
    assert "lora_rank=8" in fields["hyperparameters"] and "max_steps=4" in fields["hyperparameters"]
    assert fields["resources"].startswith("workers=1 cpus_per_worker=1")


class _Stream:
    """A StreamProgress call: yields updates, then raises ``then`` (if any)."""

    def __init__(self, updates: list[tpb.Progress], then: BaseException | None = None) -> None:
        self.updates, self.then, self.cancelled = updates, then, False

    def __iter__(self) -> Iterator[tpb.Progress]:
        yield from self.updates
        if self.then is not None:
            raise self.then

    def cancel(self) -> None:
        self.cancelled = True


class _Stub:
    def __init__(self, stream: _Stream, job: tpb.Job) -> None:
        self.stream, self.job = stream, job

    def StreamProgress(self, request: tpb.StreamProgressRequest, **kw: object) -> _Stream:  # noqa: N802
        assert request.job_id == "j1"
        return self.stream

    def GetJob(self, request: tpb.GetJobRequest, **kw: object) -> tpb.Job:  # noqa: N802
        return self.job


def _follow(stub: _Stub) -> int:
    try:
        training_commands._follow(stub, "j1")  # type: ignore[arg-type]
    except training_commands.typer.Exit as exc:
        return exc.exit_code
    return 0


def test_following_a_successful_job_prints_metrics_and_the_adapter(capsys: pytest.CaptureFixture) -> None:
    updates = [_progress(0, tpb.JOB_STATE_QUEUED), _progress(1), _progress(4, tpb.JOB_STATE_SUCCEEDED)]
    job = _job(
        tpb.JOB_STATE_SUCCEEDED,
        metrics={"eval_loss": 1.25, "exact_match": 0.5},
        adapter_uri="file:///a/adapters/cards-bot/j1",
    )
    assert _follow(_Stub(_Stream(updates), job)) == 0
    out = capsys.readouterr().out
    assert "job j1: SUCCEEDED" in out and "adapter: file:///a/adapters/cards-bot/j1" in out
    assert "eval_loss" in out and "1.25" in out and "exact_match" in out


def test_following_a_failed_job_exits_1_with_the_reason(capsys: pytest.CaptureFixture) -> None:
    job = _job(tpb.JOB_STATE_CANCELLED, error="cancelled: by alice")
    assert _follow(_Stub(_Stream([_progress(2, tpb.JOB_STATE_CANCELLED)]), job)) == 1
    captured = capsys.readouterr()
    assert "CANCELLED" in captured.out and "cancelled: by alice" in captured.err


def test_ctrl_c_stops_following_only(capsys: pytest.CaptureFixture) -> None:
    stream = _Stream([_progress(1)], then=KeyboardInterrupt())
    assert _follow(_Stub(stream, _job(tpb.JOB_STATE_RUNNING))) == INTERRUPTED
    err = capsys.readouterr().err
    assert stream.cancelled
    assert "keeps running" in err and "llmops jobs cancel j1" in err


def test_a_lost_stream_says_how_to_follow_again(capsys: pytest.CaptureFixture) -> None:
    class Unavailable(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "connection reset"

    assert _follow(_Stub(_Stream([_progress(1)], then=Unavailable()), _job(tpb.JOB_STATE_RUNNING))) == 1
    err = capsys.readouterr().err
    assert "llmops jobs follow j1" in err and "UNAVAILABLE" in err and "connection reset" in err


def test_dataset_version_fields() -> None:
    version = lpb.DatasetVersion(
        version_id="dv1",
        dataset="cards",
        train_count=21,
        eval_count=3,
        uri="file:///d/cards/dv1.parquet",
        eval_fraction=0.1,
        task_type=lpb.TASK_TYPE_CORRECTION,
        lineage=lpb.DatasetLineage(queues=["q1", "q2"], snapshot_ids=["s1"], label_ids_count=24),
    )
    fields = dict(dataset_version_fields(version))
    assert fields["train / eval"] == "21 / 3" and fields["task type"] == "correction"
    assert fields["queues"] == "q1, q2" and fields["snapshots"] == "s1" and fields["labelers"] == "-"
    assert fields["eval fraction"] == "0.1" and "description" not in fields


# --- registry rendering ---------------------------------------------------------------------------


def test_version_selector_takes_a_number_or_an_alias() -> None:
    assert version_selector("3") == {"version": 3}
    assert version_selector("champion") == {"alias": "champion"}
    assert rpb.GetVersionRequest(model="m", **version_selector("2")).WhichOneof("selector") == "version"


def test_alias_changes_and_versions_render_as_lines() -> None:
    change = rpb.AliasChange(
        model="bot", alias="champion", from_version=1, to_version=2, actor="alice", operation="promote"
    )
    assert change_text(change) == "bot@champion: 1 -> 2 (promote by alice)"
    first = rpb.AliasChange(
        model="bot", alias="champion", to_version=1, actor="cli", reason="ok", operation="set"
    )
    assert change_text(first) == "bot@champion: none -> 1 (set by cli: ok)"
    version = rpb.ModelVersion(
        version=1,
        status=rpb.VERSION_STATUS_READY,
        aliases=["champion"],
        metrics={"exact_match": 0.25, "judge_decided": 0.0},
        training_job_id="j1",
        dataset_version_id="dv1",
    )
    assert version_row(version) == (
        "1",
        "READY",
        "champion",
        "exact_match=0.25 judge_decided=0",
        "j1",
        "dv1",
        "-",
    )


def test_lineage_rows_list_nodes_upstream_first_and_edges() -> None:
    lineage = rpb.Lineage(
        nodes=[
            rpb.LineageNode(
                kind=rpb.LINEAGE_NODE_KIND_DATASET_VERSION,
                id="dataset_version:dv1",
                uri="file:///d/dv1.parquet",
                attributes={"train_count": "21", "dataset": "cards"},
            ),
            rpb.LineageNode(kind=rpb.LINEAGE_NODE_KIND_TRAINING_JOB, id="training_job:j1"),
            rpb.LineageNode(
                kind=rpb.LINEAGE_NODE_KIND_MODEL_VERSION,
                id="model_version:bot/1",
                attributes={"metric.eval_loss": "1.5171848643909802", "version": "1"},
            ),
        ],
        edges=[
            rpb.LineageEdge(from_id="dataset_version:dv1", to_id="training_job:j1", relation="trained_on"),
            rpb.LineageEdge(from_id="training_job:j1", to_id="model_version:bot/1", relation="produced"),
        ],
    )
    nodes, edges = lineage_rows(lineage)
    assert nodes == [
        ("dataset_version", "dataset_version:dv1", "-", "file:///d/dv1.parquet dataset=cards train_count=21"),
        ("training_job", "training_job:j1", "-", ""),
        ("model_version", "model_version:bot/1", "-", "metric.eval_loss=1.517 version=1"),
    ]
    assert edges == [
        ("dataset_version:dv1", "trained_on", "training_job:j1"),
        ("training_job:j1", "produced", "model_version:bot/1"),
    ]
