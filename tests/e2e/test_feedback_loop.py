"""The loop, closed with no glue code, on the platform `make up` starts: live traffic and feedback,
drift in the prompts, the policy fires, a LoRA adapter is trained from the feedback, canaried on live
quality and promoted; and in a second scenario, a challenger trained on poisoned corrections is
rolled back and the champion keeps all traffic.

The simulated users judge answers by a fixed rule (the favoured behaviour): for `geo`, a terse answer
naming the capital ("Paris."), where SmolLM2 by itself answers in a sentence; for `geo-b`, any answer
naming the right capital. Only the users' feedback (scores and corrections) and one approval reach
the platform; everything between is the platform's own doing.

What is measured: on held-out countries (never in training or in the canary), how often the promoted
model answers in the favoured way, against the old champion (printed, and held to a threshold).

SmolLM2-135M, the only model on the machine, is no judge: asked which of two answers is better, it
answers neither "A" nor "B" (training records judge_decided = 0 and no win rate). So the policies
set no judge threshold; training is still asked to compare with the registry's champion (the job
carries the champion's adapter), and the quality verdict is the canary's live feedback and the
held-out measurement. The threshold itself is tested in tests/unit/test_monitoring_loop.py.

In the second scenario the canary also asks a live judge (the same base model, through serving) to
rate a sample of each arm's answers: the test checks that its ratings reach ClickHouse for both arms
and that the analysis carries them; with this judge, what it rates decides nothing (the feedback
does). How judge scores decide a canary is tested in tests/unit/test_monitoring_loop.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.events import InferenceLogged
from llmops.contracts.rpc.feedback.v1 import feedback_pb2, feedback_pb2_grpc
from llmops.contracts.rpc.labeling.v1 import labeling_pb2, labeling_pb2_grpc
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.contracts.rpc.registry.v1 import registry_pb2 as reg
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.contracts.rpc.training.v1 import training_pb2, training_pb2_grpc
from llmops.core.model_assets import SMOLLM2_NAME, smollm2_path
from llmops.core.settings import PlatformSettings
from llmops.testing.platform import auth, eventually, publish_raw, query_monitoring, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # vLLM start, two fine-tunes on 2 cores

TRAIN = {
    "France": "Paris", "Germany": "Berlin", "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow",
    "Egypt": "Cairo", "Canada": "Ottawa", "Australia": "Canberra", "India": "New Delhi",
    "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw", "Austria": "Vienna",
    "Ireland": "Dublin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon", "Finland": "Helsinki",
    "Denmark": "Copenhagen",
}  # fmt: skip
HELD_OUT = {
    "the Netherlands": "Amsterdam", "Belgium": "Brussels", "Hungary": "Budapest", "Cuba": "Havana",
    "Argentina": "Buenos Aires", "Peru": "Lima", "Kenya": "Nairobi", "Thailand": "Bangkok",
    "South Korea": "Seoul", "Czech Republic": "Prague", "Romania": "Bucharest", "Vietnam": "Hanoi",
    "Indonesia": "Jakarta", "Iraq": "Baghdad", "Chile": "Santiago",
}  # fmt: skip
PHASE_ONE = 40  # answers rated before the loop can start (the policies' min_feedback)
POISON = "I cannot answer that."
# On held-out countries the promoted model answers in the favoured style (the capital alone) this much
# more often than the old champion, at least, and with the right capital alone this much more often
# (that also needs the base model to know the capital).
STYLE_GAIN = 0.5
RIGHT_GAIN = 0.3


def question(country: str) -> str:
    return f"What is the capital of {country}?"


def terse_and_right(answer: str, capital: str) -> bool:
    """The favoured behaviour of `geo`: the capital alone ("Paris." or "Paris")."""
    return answer.strip().rstrip(".").strip().lower() == capital.lower()


def terse(answer: str) -> bool:
    """The favoured style: a name alone, not a sentence."""
    words = answer.strip().rstrip(".").split()
    return 0 < len(words) <= 3 and "capital" not in answer.lower()


def names_capital(answer: str, capital: str) -> bool:
    return capital.lower() in answer.lower()


def _policy(**overrides: object) -> dict:
    policy = {
        "feedback_below": 0.5, "min_feedback": PHASE_ONE, "feedback_window_seconds": 1800,
        "drift_signals": [], "cooldown_seconds": 3600, "method": "sft_lora", "eval_fraction": 0.2,
        "min_examples": 20, "min_judge_win_rate": None,
        "hyperparameters": {
            # Gentle enough to learn the style without forgetting the capitals it knew: with 2e-3 and
            # 30 steps the adapter answered held-out countries with training capitals ("Warsaw.").
            "lora_rank": 8, "lora_alpha": 16, "learning_rate": 0.0005, "batch_size": 4, "max_length": 96,
            "max_steps": 20, "seed": 1,
        },
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "canary": {
            "steps": [0.5], "interval_seconds": 5, "min_requests": 20, "min_feedback": 20, "alpha": 0.05,
        },
    }  # fmt: skip
    policy.update(overrides)
    return policy


POLICIES = {
    # Drift in the prompts or the falling feedback may start it; promotion waits for a person.
    "geo": _policy(drift_signals=["prompt_embedding"], approval=["promote"]),
    # The canary also asks a live judge (the base model, the only one here) to rate each arm's answers.
    "geo-b": _policy(
        canary={
            "steps": [0.5],
            "interval_seconds": 5,
            "min_requests": 20,
            "min_feedback": 20,
            "alpha": 0.05,
            "judge": {"model": SMOLLM2_NAME, "sample": 10, "min_scores": 5},
        }
    ),  # fmt: skip
}

ENV = {
    "LLMOPS_MONITORING_LOOP_POLICIES": json.dumps(POLICIES),
    "LLMOPS_MONITORING_LOOP_INTERVAL_SECONDS": "3",
    "LLMOPS_MONITORING_DRIFT_INTERVAL_SECONDS": "10",
    "LLMOPS_MONITORING_DRIFT_WINDOW_SECONDS": "300",
    "LLMOPS_MONITORING_DRIFT_REFERENCE_SECONDS": "3600",
    "LLMOPS_MONITORING_DRIFT_MODELS": "geo",
    # A window needs all of phase one before drift is judged.
    "LLMOPS_MONITORING_DRIFT_MIN_COUNT": str(PHASE_ONE),
    "LLMOPS_MONITORING_ALERT_ENABLED": "false",
    "LLMOPS_TRAINING_EVAL_MAX_GENERATE_EXAMPLES": "6",
    "LLMOPS_TRAINING_EVAL_MAX_NEW_TOKENS": "8",
    "LLMOPS_TRAINING_EVAL_NUM_THREADS": "1",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("feedback-loop"), **ENV) as platform:
        yield platform


def _stub(platform: LocalPlatform, service: str, stub_class):  # noqa: ANN001, ANN202
    return stub_class(grpc.insecure_channel(platform.address(service)))


def _first_champion(platform: LocalPlatform, model: str) -> None:
    """`model` with version 1 as champion: a LoRA adapter that changes nothing yet (B = 0)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = platform.data_dir / "artifacts" / "adapters" / model / "v1"
    base = AutoModelForCausalLM.from_pretrained(
        smollm2_path(PlatformSettings().models_dir), dtype=torch.float32
    )
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    get_peft_model(base, config).save_pretrained(folder)
    registry = _stub(platform, "registry", registry_pb2_grpc.RegistryServiceStub)
    md = auth(platform)
    registry.CreateModel(reg.CreateModelRequest(name=model, base_model=SMOLLM2_NAME), metadata=md, timeout=30)
    registry.CreateVersion(
        reg.CreateVersionRequest(
            model=model, artifact_uri=f"file://{folder}", base_model=SMOLLM2_NAME, adapter=True,
            adapter_kind="lora", description="first release: the base model's behaviour",
        ),
        metadata=md, timeout=30,
    )  # fmt: skip
    registry.Promote(reg.PromoteRequest(model=model, version=1, actor="e2e"), metadata=md, timeout=30)


async def _until_served(platform: LocalPlatform, model: str) -> None:
    """Serving learns of the new champion from models.alias_changed: wait until it answers for it."""

    async def served() -> bool:
        (reply,) = await _ask(platform, model, ["Hello"], ["warm-up"])
        return reply.model_version == f"{model}/1"

    await eventually(served, timeout=120, interval=2)


async def _ask(platform: LocalPlatform, model: str, prompts: list[str], users: list[str]) -> list:
    """One greedy answer per prompt (8 at a time); the replies in order."""
    md = auth(platform)
    semaphore = asyncio.Semaphore(8)
    async with grpc.aio.insecure_channel(platform.address("serving")) as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)

        async def one(prompt: str, user: str) -> serving_pb2.GenerateResponse:
            async with semaphore:
                return await stub.Generate(
                    serving_pb2.GenerateRequest(
                        model=model, prompt=prompt, max_tokens=12, temperature=0, user=user
                    ),
                    metadata=md, timeout=300,
                )  # fmt: skip

        return await asyncio.gather(*(one(p, u) for p, u in zip(prompts, users, strict=True)))


def _rate(
    platform: LocalPlatform, reply: serving_pb2.GenerateResponse, up: bool, correction: str = ""
) -> None:
    feedback = _stub(platform, "feedback", feedback_pb2_grpc.FeedbackServiceStub)
    feedback.Submit(
        feedback_pb2.SubmitFeedbackRequest(
            request_id=reply.request_id, thumb=feedback_pb2.THUMB_UP if up else feedback_pb2.THUMB_DOWN,
            correction=correction, user_id="e2e-user",
        ),
        metadata=auth(platform), timeout=30,
    )  # fmt: skip


def _status(platform: LocalPlatform, model: str) -> monitoring_pb2.LoopStatus:
    monitoring = _stub(platform, "monitoring", monitoring_pb2_grpc.MonitoringServiceStub)
    return monitoring.GetLoopStatus(
        monitoring_pb2.GetLoopStatusRequest(model=model, max_steps=50), metadata=auth(platform), timeout=30
    )


def _steps(status: monitoring_pb2.LoopStatus) -> list[str]:
    return [s.step for s in reversed(status.steps) if s.loop_id == status.loop_id]


async def _until_canary(
    platform: LocalPlatform, model: str, timeout: float = 1200
) -> monitoring_pb2.LoopStatus:
    """Wait until `model`'s loop runs a canary (training included); fail with its story if it ends."""

    def canarying() -> monitoring_pb2.LoopStatus | None:
        status = _status(platform, model)
        steps = _steps(status)
        if status.loop_id and not status.active:
            raise AssertionError(f"{model}'s loop ended: {[(s.step, s.reason) for s in status.steps]}")
        return status if "canary_started" in steps else None

    return await eventually(canarying, timeout=timeout, interval=5)


async def _canary_traffic(
    platform: LocalPlatform,
    model: str,
    judge,
    until: set[str],
    rounds: int = 12,  # noqa: ANN001
) -> monitoring_pb2.LoopStatus:
    """Live users (20 new ones a round) ask and rate by `judge(answer, capital)` until the loop's
    state is in `until`."""
    countries = list(TRAIN)
    for round_ in range(rounds):
        users = [f"{model}-canary-{round_}-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
        asked = [countries[(round_ * 20 + i) % len(countries)] for i in range(20)]
        replies = await _ask(platform, model, [question(c) for c in asked], users)
        for reply, country in zip(replies, asked, strict=True):
            _rate(platform, reply, judge(reply.text, TRAIN[country]))
        await asyncio.sleep(8)  # the ratings reach ClickHouse; the canary is analysed every 5 s
        status = _status(platform, model)
        if status.state in until:
            return status
    raise AssertionError(
        f"{model}: no verdict after {rounds} rounds: {[(s.step, s.reason) for s in status.steps]}"
    )


def _cli(platform: LocalPlatform, *args: str) -> str:
    env = {
        **os.environ, "LLMOPS_API_KEY": platform.api_key(),
        "LLMOPS_MONITORING_ADDRESS": platform.address("monitoring"), "COLUMNS": "400",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "llmops.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"llmops {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


async def _reference_traffic(platform: LocalPlatform, model: str) -> None:
    """What `model` was asked before today: real sentences (the GPL's), logged 20 minutes ago."""
    import datetime as dt

    text = await asyncio.to_thread(Path("/usr/share/common-licenses/GPL-3").read_text)
    lines = [
        line.strip() for line in text.splitlines()
        if len(line.split()) >= 8
    ][:80]  # fmt: skip
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    events = [
        InferenceLogged(
            request_id=f"{model}-history-{i}",
            model=model,
            model_version=f"{model}/1",
            arm="champion",
            prompt=line,
            completion="...",
            prompt_tokens=len(line.split()),
            completion_tokens=3,
            latency_ms=200.0,
            time_to_first_token_ms=50.0,
            occurred_at=at + dt.timedelta(seconds=i),
        )  # fmt: skip
        for i, line in enumerate(lines)
    ]
    for event in events:
        await publish_raw(
            platform.bootstrap_servers, event.topic, [event.model_dump_json().encode()], key=event.kafka_key()
        )


def _version(platform: LocalPlatform, model: str, version: int) -> reg.ModelVersion:
    registry = _stub(platform, "registry", registry_pb2_grpc.RegistryServiceStub)
    return registry.GetVersion(
        reg.GetVersionRequest(model=model, version=version), metadata=auth(platform), timeout=30
    )


def _aliases(platform: LocalPlatform, model: str) -> dict[str, int]:
    registry = _stub(platform, "registry", registry_pb2_grpc.RegistryServiceStub)
    return dict(
        registry.GetModel(reg.GetModelRequest(name=model), metadata=auth(platform), timeout=30).aliases
    )


async def test_feedback_and_drift_train_canary_and_promote_a_better_model(platform: LocalPlatform) -> None:
    model = "geo"
    _first_champion(platform, model)
    await _until_served(platform, model)
    await _reference_traffic(platform, model)

    # Phase one: users ask for capitals; the champion answers in sentences; users want the capital
    # alone: thumbs down, with the answer they wanted.
    countries = [list(TRAIN)[i % len(TRAIN)] for i in range(PHASE_ONE)]
    replies = await _ask(
        platform, model, [question(c) for c in countries], [f"u-{i}" for i in range(PHASE_ONE)]
    )
    assert {r.model_version for r in replies} == {"geo/1"}
    before = sum(terse_and_right(r.text, TRAIN[c]) for r, c in zip(replies, countries, strict=True))
    for reply, country in zip(replies, countries, strict=True):
        good = terse_and_right(reply.text, TRAIN[country])
        _rate(platform, reply, good, correction="" if good else f"{TRAIN[country]}.")
    print(f"phase one: {before}/{PHASE_ONE} answers already terse; e.g. {replies[0].text!r}")

    # The loop starts by itself (drift in the prompts against the history, or the feedback), builds
    # a dataset from the corrections, trains on Ray, evaluates against the champion and canaries.
    status = await _until_canary(platform, model)
    steps = _steps(status)
    assert steps[:4] == ["triggered", "dataset_built", "training_requested", "trained"], steps
    print("loop so far:", [(s.step, s.reason) for s in reversed(status.steps)])
    drifted = query_monitoring(
        platform,
        "SELECT signal, value, p_value FROM drift_reports_v "
        "WHERE model = 'geo' AND signal = 'prompt_embedding'",
    )
    assert drifted, "the capital questions drifted from the history's prompts, but no drift was reported"
    print(
        f"prompt drift reported {len(drifted)} time(s); e.g. distance {drifted[0][1]:.3f}, p {drifted[0][2]}"
    )
    challenger = status.steps[0].challenger_version
    assert challenger >= 2 and _aliases(platform, model)["challenger"] == challenger
    trained = _version(platform, model, challenger)
    # The judge compared it with the champion's adapter (not the base model): the job says which.
    training = _stub(platform, "training", training_pb2_grpc.TrainingServiceStub)
    job = training.GetJob(training_pb2.GetJobRequest(job_id=trained.training_job_id), metadata=auth(platform))
    assert job.spec.labels["champion_adapter_uri"] == _version(platform, model, 1).artifact_uri
    assert "judge_decided" in trained.metrics, dict(trained.metrics)
    print(f"{model}/{challenger}: metrics {dict(trained.metrics)}")

    # The dataset came from the users' corrections.
    labeling = _stub(platform, "labeling", labeling_pb2_grpc.LabelingServiceStub)
    dataset = labeling.GetDatasetVersion(
        labeling_pb2.GetDatasetVersionRequest(version_id=trained.dataset_version_id), metadata=auth(platform)
    )
    rows = pq.read_table(dataset.uri.removeprefix("file://")).to_pylist()
    assert rows and all(r["completion"].rstrip(".") in TRAIN.values() for r in rows), rows[:3]

    # The canary on live quality: the challenger's answers are liked, the champion's are not.
    status = await _canary_traffic(platform, model, terse_and_right, {"awaiting_approval"})
    waiting = status.steps[0]
    print("canary verdict:", waiting.reason)
    assert waiting.next_step == "promote"
    assert waiting.values["challenger_feedback_mean"] > waiting.values["champion_feedback_mean"]
    # A person approves with the CLI; the registry then holds the challenger as champion.
    shown = _cli(platform, "loop", "status", model, "--evidence")
    assert "awaiting_approval" in shown and "p_value" in shown
    _cli(platform, "loop", "approve", model, "--reason", "held-out check next")
    await eventually(lambda: _aliases(platform, model).get("champion") == challenger, timeout=60)
    final = _status(platform, model)
    assert final.state == "promoted" and not final.active

    # Every step is a row in ClickHouse, and the last one ties the feedback's dataset and the
    # training job to the deployed version (lineage from feedback to deployment). The steps reach
    # ClickHouse through Kafka: the promotion's row is waited for, not read before it could arrive.
    def steps_stored() -> list[list]:
        return query_monitoring(
            platform,
            "SELECT step, dataset_version_id, training_job_id, challenger_version FROM loop_steps_v "
            "WHERE loop_id = {l:String} ORDER BY occurred_at",
            l=final.loop_id,
        )

    rows = await eventually(
        lambda: (found := steps_stored()) and found[-1][0] == "promoted" and found, timeout=60
    )
    assert [r[0] for r in rows][-3:] == ["awaiting_approval", "approved", "promoted"]
    assert rows[-1][1:] == [trained.dataset_version_id, trained.training_job_id, challenger]
    registry = _stub(platform, "registry", registry_pb2_grpc.RegistryServiceStub)
    lineage = registry.GetLineage(
        reg.GetLineageRequest(model=model, version=challenger), metadata=auth(platform)
    )
    assert any(trained.dataset_version_id in n.id for n in lineage.nodes)

    # Held out: countries neither trained on nor asked in the canary.
    held = list(HELD_OUT)
    old = await _ask(platform, "geo/1", [question(c) for c in held], [f"h-{c}" for c in held])
    new = await _ask(platform, f"geo/{challenger}", [question(c) for c in held], [f"h-{c}" for c in held])
    pairs = list(zip(held, old, new, strict=True))
    old_style = sum(terse(o.text) for _, o, _ in pairs) / len(held)
    new_style = sum(terse(n.text) for _, _, n in pairs) / len(held)
    old_right = sum(terse_and_right(o.text, HELD_OUT[c]) for c, o, _ in pairs) / len(held)
    new_right = sum(terse_and_right(n.text, HELD_OUT[c]) for c, _, n in pairs) / len(held)
    # What it knows, whatever the style: the cost of the new style on held-out facts, shown, not hidden.
    old_named = sum(names_capital(o.text, HELD_OUT[c]) for c, o, _ in pairs) / len(held)
    new_named = sum(names_capital(n.text, HELD_OUT[c]) for c, _, n in pairs) / len(held)
    for country, o, n in pairs:
        print(f"  {country}: {o.text!r} -> {n.text!r}")
    print(
        f"held out ({len(held)} countries), old champion geo/1 -> promoted geo/{challenger}: "
        f"the capital alone {old_style:.0%} -> {new_style:.0%}; "
        f"the right capital alone {old_right:.0%} -> {new_right:.0%}; "
        f"the right capital anywhere in the answer {old_named:.0%} -> {new_named:.0%}"
    )
    assert new_style - old_style >= STYLE_GAIN
    assert new_right - old_right >= RIGHT_GAIN


async def test_a_challenger_trained_on_poisoned_corrections_is_rolled_back(platform: LocalPlatform) -> None:
    model = "geo-b"
    _first_champion(platform, model)
    await _until_served(platform, model)
    # Phase one: one careless user marks every answer down with a useless "correction".
    countries = [list(TRAIN)[i % len(TRAIN)] for i in range(PHASE_ONE)]
    replies = await _ask(
        platform, model, [question(c) for c in countries], [f"b-{i}" for i in range(PHASE_ONE)]
    )
    champion_right = sum(names_capital(r.text, TRAIN[c]) for r, c in zip(replies, countries, strict=True))
    for reply in replies:
        _rate(platform, reply, False, correction=POISON)
    print(f"the champion names the right capital in {champion_right}/{PHASE_ONE} answers")

    status = await _until_canary(platform, model)
    challenger = status.steps[0].challenger_version
    # Live users rate by whether the answer names the right capital: the challenger does worse.
    status = await _canary_traffic(platform, model, names_capital, {"rolled_back"})
    print("canary verdict:", status.steps[0].reason)
    assert (
        status.steps[0].values["challenger_feedback_mean"] < status.steps[0].values["champion_feedback_mean"]
    )
    aliases = _aliases(platform, model)
    assert aliases.get("champion") == 1 and "challenger" not in aliases
    # The live judge rated answers of both arms through serving; its ratings are in ClickHouse with the
    # loop's id, and the analysis that rolled back names the judge and its query.
    judged = query_monitoring(
        platform,
        "SELECT arm, count(), countIf(score IS NOT NULL), avg(score), any(judge_answer) FROM judge_scores_v "
        "WHERE model = {m:String} AND judge = {j:String} AND loop_id = {l:String} GROUP BY arm ORDER BY arm",
        m=model, j=SMOLLM2_NAME, l=status.steps[0].loop_id,
    )  # fmt: skip
    print("live judge, per arm (arm, judged, rated, mean score, an answer):", judged)
    assert [row[0] for row in judged] == ["challenger", "champion"] and all(row[1] > 0 for row in judged)
    assert status.steps[0].evidence["judge"] == SMOLLM2_NAME
    assert "judge_scores_v" in status.steps[0].evidence["judge_query"]
    assert "challenger_judge_scores" in status.steps[0].values
    # The canary ended in a rollback, as the registry announced it (stored by monitoring).
    await eventually(
        lambda: (
            query_monitoring(
                platform,
                "SELECT active, outcome FROM model_canaries_current WHERE model = {m:String}",
                m=model,
            )
            == [[False, "rollback"]]
        ),
        timeout=30,
    )
    # The champion keeps all traffic: new users all meet version 1.
    later = await _ask(platform, model, [question("France")] * 16, [f"after-{i}" for i in range(16)])
    assert {r.model_version for r in later} == {"geo-b/1"}, {r.model_version for r in later}
    assert challenger >= 2
