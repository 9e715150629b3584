"""Validation of what callers send: names, aliases, version specs, canary shares and prompt templates.
Errors name the field."""

from __future__ import annotations

import math
import re
from dataclasses import replace

from llmops.core.prompt_templates import check_template
from llmops.registry.domain.errors import InvalidArgument
from llmops.registry.domain.gates import check_metric_name
from llmops.registry.domain.models import PromptTemplateSpec, VersionSpec

MAX_NAME_CHARS = 200
MAX_ALIAS_CHARS = 64
MAX_ID_CHARS = 256
MAX_URI_CHARS = 2048
MAX_TEXT_CHARS = 20_000
MAX_PARAM_CHARS = 10_000
MAX_ENTRIES = 1_000

# Model names travel as Kafka keys, in URIs and in "model@alias" references: no spaces or "@".
# Prompt template names follow the same rules (they are referenced as "name@alias" too).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def check_model_name(name: str, field: str = "model") -> str:
    """``name`` if it is a valid model name.

    Raises:
        InvalidArgument: empty, too long, or with characters other than letters, digits, ``. _ / -``.
    """
    return _check_name(name, field, "registered model", "model name")


def check_template_name(name: str, field: str = "name") -> str:
    """``name`` if it is a valid prompt template name (the rules of model names).

    Raises:
        InvalidArgument: empty, too long, or with characters other than letters, digits, ``. _ / -``.
    """
    return _check_name(name, field, "prompt template", "template name")


def _check_name(name: str, field: str, thing: str, kind: str) -> str:
    if not name:
        raise InvalidArgument(f"{field} is empty: name the {thing}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_NAME_CHARS} characters")
    if not MODEL_NAME.fullmatch(name):
        raise InvalidArgument(
            f"{field} {name!r} is not a valid {kind}: start with a letter or digit and use only "
            "letters, digits, '.', '_', '/' and '-'"
        )
    return name


def check_alias(alias: str, field: str = "alias") -> str:
    """``alias`` if it is a valid alias name (e.g. ``champion``).

    Raises:
        InvalidArgument: empty, too long, or not a letter followed by letters, digits, ``_`` or ``-``.
    """
    if not alias:
        raise InvalidArgument(f"{field} is empty")
    if len(alias) > MAX_ALIAS_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_ALIAS_CHARS} characters")
    if not ALIAS_NAME.fullmatch(alias):
        raise InvalidArgument(
            f"{field} {alias!r} is not a valid alias: start with a letter and use only letters, digits, "
            "'_' and '-'"
        )
    return alias


def check_version_number(version: int, field: str = "version") -> int:
    """``version`` if it can be a version number (1 or more).

    Raises:
        InvalidArgument: zero or negative.
    """
    if version < 1:
        raise InvalidArgument(f"{field} must be 1 or more (versions number from 1), got {version}")
    return version


def check_text(value: str, field: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``value`` if it is at most ``limit`` characters.

    Raises:
        InvalidArgument: too long.
    """
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters")
    return value


def check_version_spec(spec: VersionSpec) -> VersionSpec:
    """``spec`` validated, with ``adapter_kind`` lower-cased; the model's base model is filled later.

    Raises:
        InvalidArgument: a missing artifact_uri, an adapter_kind without adapter, a metric that is not
            a finite number, or a field that is too long; the message names the field.
    """
    check_model_name(spec.model)
    if not spec.artifact_uri.strip():
        raise InvalidArgument("artifact_uri is empty: say where the weights or adapter are")
    check_text(spec.artifact_uri, "artifact_uri", MAX_URI_CHARS)
    check_text(spec.base_model, "base_model", MAX_URI_CHARS)
    check_text(spec.adapter_kind, "adapter_kind", 64)
    if spec.adapter_kind and not spec.adapter:
        raise InvalidArgument(
            f"adapter_kind is {spec.adapter_kind!r} but adapter is false: set adapter for an adapter"
        )
    check_text(spec.training_job_id, "training_job_id", MAX_ID_CHARS)
    check_text(spec.dataset_version_id, "dataset_version_id", MAX_ID_CHARS)
    check_text(spec.description, "description")
    if len(spec.metrics) > MAX_ENTRIES or len(spec.params) > MAX_ENTRIES:
        raise InvalidArgument(f"metrics and params are limited to {MAX_ENTRIES} entries each")
    for name, value in spec.metrics.items():
        check_metric_name(name, "metrics key")
        if not math.isfinite(value):
            raise InvalidArgument(f"metrics[{name!r}] is {value!r}: metrics must be finite numbers")
    for name, value in spec.params.items():
        if not name:
            raise InvalidArgument("params has an empty key")
        check_text(name, "params key", 256)
        check_text(value, f"params[{name!r}]", MAX_PARAM_CHARS)
    return replace(
        spec,
        adapter_kind=spec.adapter_kind.strip().lower(),
        metrics={k: float(v) for k, v in spec.metrics.items()},
        params=dict(spec.params),
    )


def check_share(share: float, field: str = "share") -> float:
    """``share`` if it is a challenger's share of traffic, in [0, 1].

    Raises:
        InvalidArgument: below 0, above 1, or NaN.
    """
    # Written so that NaN, which compares false with everything, fails too.
    if not 0.0 <= share <= 1.0:
        raise InvalidArgument(
            f"{field} must be between 0 and 1 (the challenger's share of the alias's traffic), got {share!r}"
        )
    return float(share)


def check_template_spec(spec: PromptTemplateSpec) -> PromptTemplateSpec:
    """``spec`` validated, with its variables sorted (llmops.core.prompt_templates checks the text).

    Raises:
        InvalidArgument: a bad name or field, or a template that does not parse, uses an undeclared
            variable or declares a bad one (TemplateError, naming it).
    """
    check_template_name(spec.name)
    check_text(spec.description, "description")
    check_text(spec.created_by, "actor", MAX_ID_CHARS)
    variables = check_template(spec.template, spec.system, spec.variables)
    return replace(spec, variables=variables)
