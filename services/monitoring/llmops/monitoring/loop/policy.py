"""What a model's feedback loop does, and when: one policy per model, from settings.

``LLMOPS_MONITORING_LOOP_POLICIES`` holds a JSON object, model name -> policy, e.g.::

    {"support-bot": {"feedback_below": 0.5, "method": "sft_lora",
                     "canary": {"steps": [0.2, 0.5], "min_requests": 40},
                     "approval": ["promote"]}}

Every field has a default a small deployment can start with; a bad field fails at start, naming it.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llmops.monitoring.drift import ALL_SIGNALS

# The steps a person can be asked to approve before the loop takes them.
ApprovalPoint = Literal["train", "canary", "promote"]
Method = Literal["sft_lora", "dpo_lora"]

# Where labeling keeps what feedback became (services/labeling): corrections are SFT examples in the
# review queue, answers to one prompt with different feedback are DPO pairs in the pairs queue.
DEFAULT_QUEUES: dict[str, tuple[str, ...]] = {
    "sft_lora": ("feedback-review",),
    "dpo_lora": ("feedback-pairs",),
}


# The judge's rating prompts, by version; a version is never edited once used (scores point at it).
JUDGE_PROMPTS: dict[str, str] = {
    "v1": (
        "Rate how well the response answers the request, from 1 (worst) to 5 (best).\n\n"
        "Request:\n{prompt}\n\nResponse:\n{response}\n\nAnswer with the number only."
    ),
}
JUDGE_RATINGS = (1.0, 5.0)  # what the prompts ask for; a score is (rating - 1) / 4


class JudgePolicy(BaseModel):
    """An LLM judge that rates a sample of each arm's live answers at every canary analysis; the
    arms' scores are then compared like their feedback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        min_length=1, description="What serving answers the judge with (model, alias or version)."
    )
    prompt_version: str = Field("v1", description=f"The rating prompt: one of {', '.join(JUDGE_PROMPTS)}.")
    sample: int = Field(
        20, ge=1, description="Answers per arm judged at each analysis, of those not judged yet."
    )
    min_scores: int = Field(20, ge=2, description="Scored answers per arm before the judge has a say.")
    concurrency: int = Field(4, ge=1, le=64, description="Judge calls at a time.")

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, version: str) -> str:
        if version not in JUDGE_PROMPTS:
            raise ValueError(f"unknown judge prompt version {version!r}; known: {', '.join(JUDGE_PROMPTS)}")
        return version


class CanaryPolicy(BaseModel):
    """How a challenger is canaried and judged on live quality (Flagger / Argo Rollouts style)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[float, ...] = Field((0.1, 0.5), description="Challenger shares, raised in this order.")
    interval_seconds: float = Field(60.0, gt=0, description="How often the canary is analysed.")
    min_requests: int = Field(30, ge=1, description="Answers per arm before any verdict.")
    min_feedback: int = Field(20, ge=2, description="Rated answers per arm before a quality verdict.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Promote or roll back on quality at p < alpha.")
    min_effect: float = Field(0.0, ge=0, description="Mean feedback difference that matters.")
    latency_p95_slo_ms: float | None = Field(None, gt=0, description="Roll back above this p95.")
    error_rate_slo: float | None = Field(None, ge=0, le=1, description="Roll back above this error share.")
    max_analyses: int = Field(60, ge=1, description="Undecided after this many: rolled back.")
    judge: JudgePolicy | None = Field(None, description="Live judge scores, compared like feedback.")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("needs at least one share")
        if any(not 0 < s <= 1 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"shares must rise strictly, each in (0, 1], got {list(steps)}")
        return steps


class LoopPolicy(BaseModel):
    """When a model's loop starts and what each of its steps does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Triggers: the feedback mean of the model's answers in the window, or drift of these signals.
    feedback_below: float | None = Field(0.5, ge=0, le=1)
    feedback_window_seconds: float = Field(3600.0, gt=0)
    min_feedback: int = Field(20, ge=1)
    drift_signals: tuple[str, ...] = Field(("prompt_embedding", "feedback_score"))
    cooldown_seconds: float = Field(3600.0, ge=0, description="After a loop ends, none starts for this.")
    # The dataset and the training run.
    method: Method = "sft_lora"
    queues: tuple[str, ...] = Field((), description="Labeling queues; empty: the method's default.")
    eval_fraction: float = Field(0.2, ge=0, lt=1)
    min_examples: int = Field(8, ge=1, description="Fewer training examples than this: no training.")
    dataset_wait_seconds: float = Field(
        300.0, ge=0, description="How long after the trigger the feedback may take to reach labeling."
    )
    hyperparameters: dict[str, float | int | str | list[str]] = Field(default_factory=dict)
    resources: dict[str, float | int] = Field(default_factory=dict)
    training_timeout_seconds: float = Field(3 * 3600.0, gt=0)
    # Evaluation before any traffic: the judge's win rate against the champion (training measures it).
    min_judge_win_rate: float | None = Field(0.5, ge=0, le=1)
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    approval: tuple[ApprovalPoint, ...] = Field((), description="Steps that wait for `llmops loop approve`.")

    @field_validator("drift_signals")
    @classmethod
    def _known(cls, signals: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(signals) - set(ALL_SIGNALS))
        if unknown:
            raise ValueError(f"unknown drift signal(s) {unknown}; known: {', '.join(ALL_SIGNALS)}")
        return signals

    @model_validator(mode="after")
    def _some_trigger(self) -> LoopPolicy:
        if self.feedback_below is None and not self.drift_signals:
            raise ValueError("a policy needs a trigger: feedback_below, drift_signals or both")
        return self

    def dataset_queues(self) -> tuple[str, ...]:
        return self.queues or DEFAULT_QUEUES[self.method]


class LoopSettings(BaseSettings):
    """The loop controller (prefix ``LLMOPS_MONITORING_LOOP_``)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_MONITORING_LOOP_", extra="ignore")

    enabled: bool = True
    interval_seconds: float = Field(30.0, gt=0, description="How often each model's loop is advanced.")
    policies: Annotated[dict[str, LoopPolicy], NoDecode] = Field(
        default_factory=dict, description="JSON object: model name -> policy (see LoopPolicy)."
    )
    actor: str = Field("loop", min_length=1, description="Who the registry's history says acted.")
    judge_timeout_seconds: float = Field(120.0, gt=0, description="Each live judge call's deadline.")

    @field_validator("policies", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"LLMOPS_MONITORING_LOOP_POLICIES is not JSON: {exc}") from exc
        if isinstance(value, dict) and any(not isinstance(k, str) or not k for k in value):
            raise ValueError("LLMOPS_MONITORING_LOOP_POLICIES: every key must be a model name")
        return value
