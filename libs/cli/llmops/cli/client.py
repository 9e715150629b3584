"""What every ``llmops`` command that calls a service shares: consoles, keyed channels, errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
import typer
from pydantic import SecretStr
from rich.console import Console

from llmops.core.clients import connect_sync
from llmops.core.settings import ClientSettings, PlatformSettings

console = Console()
err = Console(stderr=True)


def settings() -> ClientSettings:
    """Client settings with the API key (LLMOPS_API_KEY, else the key `make up` wrote); exits 2 without."""
    found = ClientSettings()
    if found.api_key is not None:
        return found
    path = PlatformSettings().run_dir / "api-key"
    if path.exists():
        return found.model_copy(update={"api_key": SecretStr(path.read_text().strip())})
    err.print("[red]no API key:[/] set LLMOPS_API_KEY (or run `make up`, which makes a local one)")
    raise typer.Exit(2)


def channel(service: str) -> grpc.Channel:
    """A channel to ``service`` at its LLMOPS_<SERVICE>_ADDRESS; every call carries the API key."""
    return connect_sync(service, settings())


def fail(exc: grpc.RpcError) -> NoReturn:
    """Print the status code and the server's message; exit 1."""
    err.print(f"[red]{exc.code().name}[/]: {exc.details()}", highlight=False)
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        err.print(
            "is the service running? `llmops status` shows the local ones; LLMOPS_<SERVICE>_ADDRESS "
            "points the CLI elsewhere"
        )
    raise typer.Exit(1)


def actor() -> str:
    """Who the audit trail names for a change made from this shell: $USER, else "cli"."""
    return os.environ.get("USER") or "cli"


def when(ts: object) -> str:
    """A protobuf Timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-`` when unset."""
    if not getattr(ts, "seconds", 0) and not getattr(ts, "nanos", 0):
        return "-"
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[attr-defined]


def number(value: float) -> str:
    """A metric for a table: integers as such, others to 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def collect_pages(fetch: Callable[[int, str], Any], items: str, limit: int) -> tuple[list[Any], bool]:
    """Up to ``limit`` items of a paged List RPC, and whether there are more.

    ``fetch(page_size, page_token)`` asks for one page; ``items`` names its repeated field.
    """
    found: list[Any] = []
    token = ""
    while len(found) < limit:
        page = fetch(min(limit - len(found), 100), token)
        found.extend(getattr(page, items))
        token = page.next_page_token
        if not token:
            break
    return found[:limit], bool(token)
