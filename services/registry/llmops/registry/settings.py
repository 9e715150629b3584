"""Registry service settings (prefix ``LLMOPS_REGISTRY_``)."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from llmops.core.settings import DatabaseSettings, ServiceSettings, comma_list
from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.gates import parse_gate
from llmops.registry.domain.models import GateRule


class Settings(ServiceSettings, DatabaseSettings):
    service_name = "registry"

    # Models that training.completed creates on the fly start with this gate: "metric>=value" rules,
    # as a JSON list or comma-separated ("eval_accuracy>=0.8,eval_loss<=1.5"); empty: no thresholds.
    default_gate: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # False: a training.completed for an unknown model is dead-lettered until someone calls CreateModel.
    auto_create_models: bool = True
    # Check that a version's artifact exists before it becomes READY (only READY versions hold aliases).
    verify_artifacts: bool = True
    artifact_check_timeout_seconds: float = Field(10.0, gt=0)
    # How often versions whose artifact could not be checked (store unreachable) are checked again.
    artifact_recheck_seconds: float = Field(30.0, gt=0)

    @field_validator("default_gate", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return comma_list(text)
        return value

    @field_validator("default_gate")
    @classmethod
    def _parses(cls, value: list[str]) -> list[str]:
        try:
            parse_gate(value)
        except InvalidArgument as exc:
            raise ValueError(f"LLMOPS_REGISTRY_DEFAULT_GATE: {exc}") from None
        return value

    def default_gate_rules(self) -> tuple[GateRule, ...]:
        return parse_gate(self.default_gate)
