"""Serving's inference log: the answer does not wait for the redaction, and what leaves the process
(Kafka, or the spool file while the broker is away) is redacted, in order, with nothing lost."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from llmops.contracts.events import Event, InferenceLogged
from llmops.core.pii import Redactor
from llmops.serving.inference_log import InferenceLogWriter

EMAIL = "jane.roe@example.org"
PHONE = "+44 20 7946 0958"
GPL = Path("/usr/share/common-licenses/GPL-3").read_text()


class _Bus:
    service = "serving"

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.published: list[Event] = []

    def stamp(self, event: Event) -> Event:
        return event

    async def publish(self, event: Event) -> None:
        if not self.up:
            raise ConnectionError("the broker is away")
        self.published.append(event)


def _writer(bus: _Bus, spool: Path, redact=Redactor()) -> InferenceLogWriter:  # noqa: ANN001, B008
    return InferenceLogWriter(
        bus,  # type: ignore[arg-type]
        spool,
        memory_limit=10,
        spool_limit_bytes=1 << 24,
        redact=redact,
    )


def _record(writer: InferenceLogWriter, i: int, prompt: str) -> None:
    writer.record(
        params=None, request_id=f"r{i}", model="bot", prompt=prompt, completion=f"mail {EMAIL} now",
        prompt_tokens=1, completion_tokens=1, latency_ms=1.0, time_to_first_token_ms=1.0,
        finish_reason="stop", streamed=False,
    )  # fmt: skip


async def test_the_caller_does_not_wait_for_the_redaction(tmp_path: Path) -> None:
    release = threading.Event()
    redact = Redactor()

    def slow(text: str) -> str:
        release.wait(10)  # a redaction that takes as long as the test says
        return redact(text)

    bus = _Bus()
    async with _writer(bus, tmp_path / "spool.jsonl", slow) as writer:
        _record(writer, 0, f"call me on {PHONE}")
        # record() has returned while the redaction is still under way: the answer was not held.
        await asyncio.sleep(0.2)
        assert writer.pending() == 1 and writer.buffer.pending() == 0 and bus.published == []
        release.set()
        await writer.drain(10)
    (event,) = bus.published
    assert PHONE not in event.prompt and EMAIL not in event.completion
    assert "call me on" in event.prompt and "now" in event.completion


async def test_every_log_leaves_redacted_in_order(tmp_path: Path) -> None:
    # Prompts up to 32 KB, as a RAG prompt with retrieved documents is.
    filler = GPL[:32_000]
    bus = _Bus()
    async with _writer(bus, tmp_path / "spool.jsonl") as writer:
        for i in range(60):
            _record(writer, i, f"{filler[: 500 * i]} write to {EMAIL} or call {PHONE}")
    # Leaving the writer waited for every redaction and published everything.
    assert [e.request_id for e in bus.published] == [f"r{i}" for i in range(60)]
    for event in bus.published:
        assert isinstance(event, InferenceLogged)
        assert EMAIL not in event.prompt + event.completion and PHONE not in event.prompt
        assert event.prompt.endswith("or call [PHONE]") and "[EMAIL]" in event.completion


async def test_with_the_broker_away_the_spool_holds_only_redacted_text(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    bus = _Bus(up=False)
    async with _writer(bus, spool) as writer:
        for i in range(25):
            _record(writer, i, f"write to {EMAIL}")
        await asyncio.sleep(0.5)
    text = spool.read_text()
    assert len(text.splitlines()) == 25  # nothing lost: memory joined the spool on close
    assert EMAIL not in text and text.count("[EMAIL]") == 50
    # The next start publishes them, redacted.
    bus.up = True
    async with _writer(bus, spool) as writer:
        await writer.drain(10)
    assert sorted(e.request_id for e in bus.published) == sorted(f"r{i}" for i in range(25))
    assert not spool.exists()
