"""Fixtures shared by the suites. Integration and end-to-end fixtures start real processes on loopback."""

from __future__ import annotations

import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _interrupt(signum: int, frame: object) -> None:
    # pytest runs fixture teardown on KeyboardInterrupt but not on SIGTERM; turning one into the
    # other means a stopped test run still stops the broker and services it started.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt)
