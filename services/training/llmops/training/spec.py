"""What a training job is: its spec (method, hyperparameters, resources), its states, its errors.

The spec is validated once, when the job is submitted (gRPC or ``training.requested``); zero values
in the gRPC message mean "use the server default", so defaults are merged in before validation.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops.core.errors import InvalidArgument


class TrainingMethod(enum.StrEnum):
    SFT_LORA = "sft_lora"
    DPO_LORA = "dpo_lora"


# The spec holds the method as its plain value; a type checker sees the same list as a Literal.
Method = Literal["sft_lora", "dpo_lora"]
METHODS: tuple[str, ...] = tuple(m.value for m in TrainingMethod)
# Sentinel peft understands: every linear layer except the output head.
ALL_LINEAR = "all-linear"
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class InvalidSpec(InvalidArgument):
    """A job spec is malformed or out of range; the message says which field and why."""


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Hyperparameters(BaseModel):
    """LoRA fine-tuning hyperparameters (the defaults are the service's, see ``Settings.defaults``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lora_rank: int = Field(8, ge=1, le=512)
    lora_alpha: float = Field(16.0, gt=0, le=4096)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    # Module names (suffixes) the adapter is attached to; ["all-linear"] means every linear layer.
    target_modules: tuple[str, ...] = (ALL_LINEAR,)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(8, ge=1, le=4096)
    max_length: int = Field(512, ge=8, le=131072)
    # > 0 caps the number of optimiser steps and overrides epochs.
    max_steps: int = Field(0, ge=0, le=10_000_000)
    seed: int = Field(42, ge=0, le=2**63 - 1)
    dpo_beta: float = Field(0.1, gt=0, le=100)
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)

    @field_validator("target_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if isinstance(value, list | tuple):
            value = tuple(v for v in value if v)
            if not value:
                return (ALL_LINEAR,)
        return value

    @field_validator("target_modules")
    @classmethod
    def _valid_modules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise ValueError(f"target module {name!r} is not a module name")
        if ALL_LINEAR in value and len(value) > 1:
            raise ValueError(f"{ALL_LINEAR!r} cannot be combined with other module names")
        return value


class Resources(BaseModel):
    """What each Ray Train worker gets; ``gpus_per_worker > 0`` trains on GPUs (NCCL)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_workers: int = Field(1, ge=1, le=1024)
    cpus_per_worker: float = Field(1.0, gt=0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0, le=64)


class JobSpec(BaseModel):
    """A validated job spec, as stored with the job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_model: str = Field(min_length=1)
    dataset_version_id: str = Field(min_length=1, max_length=256)
    method: Method
    model_name: str
    hyperparameters: Hyperparameters
    resources: Resources
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not MODEL_NAME_RE.fullmatch(value):
            raise ValueError(
                "model_name must be 1-128 characters of letters, digits, '.', '_' or '-' "
                f"(it names the adapter's folder), got {value!r}"
            )
        return value

    @field_validator("dataset_version_id")
    @classmethod
    def _version_id(cls, value: str) -> str:
        # An id labeling gave out (a content hash): no path separators or wildcards.
        if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError(f"dataset_version_id {value!r} is not a version id")
        return value

    def params(self) -> dict[str, str]:
        """Hyperparameters and resources as strings (the ``params`` of ``training.completed``)."""
        out: dict[str, str] = {}
        for key, value in {**self.hyperparameters.model_dump(), **self.resources.model_dump()}.items():
            out[key] = ",".join(value) if isinstance(value, tuple | list) else str(value)
        return out


def build_spec(
    raw: Mapping[str, Any],
    defaults: Hyperparameters,
    default_resources: Resources,
    *,
    zero_is_default: bool = True,
) -> JobSpec:
    """Validate ``raw``, with the service's defaults for the hyperparameters and resources not set.

    Args:
        raw: base_model, dataset_version_id, method, model_name, hyperparameters (dict), resources
            (dict), labels.
        defaults: the service's default hyperparameters.
        default_resources: the service's default resources.
        zero_is_default: gRPC has no "unset" for scalars, so there 0 / "" / [] mean "use the
            default"; an event's dict holds only what the producer set, so its zeros are real values.

    Raises:
        InvalidSpec: a missing or out-of-range field; the message lists every problem.
    """
    data = dict(raw)
    hp = {k: v for k, v in dict(data.get("hyperparameters") or {}).items() if not _skip(v, zero_is_default)}
    res = {k: v for k, v in dict(data.get("resources") or {}).items() if not _skip(v, zero_is_default)}
    if data.get("method") not in METHODS:
        raise InvalidSpec(f"method must be one of {', '.join(METHODS)}, got {data.get('method')!r}")
    problems: list[str] = []
    for key, model, default in (
        ("hyperparameters", Hyperparameters, defaults),
        ("resources", Resources, default_resources),
    ):
        given = hp if key == "hyperparameters" else res
        try:
            data[key] = model(**{**default.model_dump(), **given})
        except ValidationError as exc:
            problems.extend(_problems(exc, key))
    if not problems:
        try:
            return JobSpec(**data)
        except ValidationError as exc:
            problems.extend(_problems(exc))
    raise InvalidSpec("invalid job spec: " + "; ".join(problems))


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``field.path: message`` per problem."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "") or "spec"
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return parts


def _skip(value: object, zero_is_default: bool) -> bool:
    if value is None:
        return True
    if not zero_is_default:
        return False
    return value == 0 or value == "" or (isinstance(value, list | tuple) and not value)
