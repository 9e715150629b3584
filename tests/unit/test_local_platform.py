"""`llmops down` (LocalPlatform.stop) returns only once nothing of the stopped process group answers.

The development broker is a launcher whose engine runs in the same process group: when SIGTERM
arrives the launcher exits at once while the engine shuts down gracefully, still answering. A stop
that waited on the launcher alone returned while the "stopped" broker still took requests.
"""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from pathlib import Path

from llmops.cli.local import free_port, group_alive
from llmops.testing.platform import make_platform

# An engine that answers on a port and, on SIGTERM, keeps answering for a while before it exits.
_ENGINE = textwrap.dedent(
    """
    import signal, socket, sys, time
    server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    def slow_exit(*_):
        time.sleep(2)
        sys.exit(0)
    signal.signal(signal.SIGTERM, slow_exit)
    while True:
        connection, _ = server.accept()
        connection.close()
    """
)
# The launcher: starts the engine in its (the same) process group and dies at once on SIGTERM.
_LAUNCHER = (
    "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', sys.argv[1], sys.argv[2]]))"
)
_IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_stop_waits_for_the_whole_process_group(tmp_path: Path) -> None:
    platform = make_platform(tmp_path)
    port = free_port()
    pid = platform._spawn("engine", [sys.executable, "-c", _LAUNCHER, _ENGINE, str(port)])
    deadline = time.monotonic() + 30
    while not _answers(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _answers(port), "the engine never started"

    assert platform.stop("engine", grace=15)

    assert not _answers(port), "stop returned while the engine of the group still answered"
    assert not group_alive(pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    platform = make_platform(tmp_path)
    pid = platform._spawn("stubborn", [sys.executable, "-c", _IGNORES_SIGTERM])
    time.sleep(0.5)
    started = time.monotonic()
    assert platform.stop("stubborn", grace=1)
    assert not group_alive(pid)
    assert time.monotonic() - started < 30
    assert platform.pid("stubborn") is None
