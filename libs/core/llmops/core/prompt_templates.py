"""Prompt templates: Jinja2 text in a sandbox, checked once when registered and rendered per request.

The registry checks a template when it is created (it parses, and it uses no variable it does not
declare); serving renders it with the request's variables and, for retrieval-augmented requests, the
chunks retrieval found as ``documents``. Both use this module, so a template the registry accepted
renders the same way in serving.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmops.core.errors import InvalidArgument

# Filled by serving, never by the caller: the chunks retrieval found for the request.
DOCUMENTS = "documents"
RESERVED = frozenset({DOCUMENTS})
MAX_TEMPLATE_CHARS = 32 * 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Autoescape off: the output is a prompt, not HTML. Sandboxed and immutable: a template registered by
# one user cannot reach Python objects or change the values it is given.
_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False, trim_blocks=True
)


@dataclass(frozen=True)
class ContextDocument:
    """A retrieved chunk as a template sees it (``{{ d.index }}. {{ d.text }}``)."""

    index: int
    text: str
    document_id: str
    chunk_id: str
    source: str
    score: float


class TemplateError(InvalidArgument):
    """A template cannot be registered or rendered; the message says where and why."""


def used_variables(text: str, *, what: str = "template") -> set[str]:
    """The names ``text`` reads from its context (TemplateError when it does not parse)."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"{what} is {len(text)} characters long, at most {MAX_TEMPLATE_CHARS}")
    try:
        return set(meta.find_undeclared_variables(_ENV.parse(text)))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{what} does not parse: {exc.message} (line {exc.lineno})") from exc


def check_template(template: str, system: str, variables: Iterable[str]) -> tuple[str, ...]:
    """Check a template before it is registered; returns its declared variables, sorted.

    Raises:
        TemplateError: empty template, a syntax error, a bad or reserved variable name, or a variable
            the text uses that is not declared (each named).
    """
    if not template.strip():
        raise TemplateError("template is empty")
    declared = list(variables)
    for name in declared:
        if not _NAME.match(name):
            raise TemplateError(
                f"variable name {name!r} is not an identifier (letters, digits, _; at most 64)"
            )
        if name in RESERVED:
            raise TemplateError(f"variable {name!r} is reserved: serving fills it with retrieved chunks")
    if len(set(declared)) != len(declared):
        twice = sorted({n for n in declared if declared.count(n) > 1})
        raise TemplateError(f"variables declared more than once: {', '.join(twice)}")
    used = used_variables(template) | used_variables(system, what="system")
    undeclared = sorted(used - set(declared) - RESERVED)
    if undeclared:
        raise TemplateError(
            f"the template uses undeclared variable(s) {', '.join(undeclared)}: declare them in `variables`"
        )
    return tuple(sorted(declared))


def render(
    text: str,
    declared: Sequence[str],
    values: Mapping[str, str],
    documents: Sequence[ContextDocument] = (),
    *,
    what: str = "template",
) -> str:
    """Render ``text`` with the request's ``values`` and ``documents``.

    Raises:
        TemplateError: a declared variable missing from ``values``, a value for a variable the template
            does not declare, or a failure while rendering (each named).
    """
    missing = [name for name in declared if name not in values]
    if missing:
        raise TemplateError(f"variable(s) {', '.join(sorted(missing))} missing: the {what} needs them")
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise TemplateError(
            f"variable(s) {', '.join(unknown)} are not declared by the {what} "
            f"(it declares: {', '.join(declared) or 'none'})"
        )
    try:
        return _ENV.from_string(text).render({**values, DOCUMENTS: list(documents)}).strip()
    except (UndefinedError, SecurityError, TypeError) as exc:
        raise TemplateError(f"the {what} failed to render: {exc}") from exc
