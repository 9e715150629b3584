"""Words the services share beyond events and RPCs: the default alias and how a judge's verdict reads."""

from __future__ import annotations

import re

# The alias a request or a promotion means when it names none ("model" is "model@champion").
DEFAULT_ALIAS = "champion"
# The alias of the version a canary tries against the champion.
CHALLENGER_ALIAS = "challenger"

_PAIRWISE = re.compile(r"\b([AB])\b")


def parse_pairwise_verdict(text: str) -> str | None:
    """The first standalone "A" or "B" in a judge's reply to a pairwise prompt; None when there is none."""
    match = _PAIRWISE.search(text.strip())
    return match.group(1) if match else None
