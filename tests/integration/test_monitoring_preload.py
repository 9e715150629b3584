"""`LLMOPS_MONITORING_DRIFT_PRELOAD=true`: the prompt-embedding model is loaded, in its own child
process, before monitoring reports SERVING; without it, nothing is loaded until the first drift run.

(The first drift run then does not pay the model's load, and the consumers never share the start-up
with it: the README's claim.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmops.cli.local import LocalPlatform
from llmops.testing.platform import running_platform

pytestmark = pytest.mark.integration

_LOADED = re.compile(r"loaded the embedding model for prompt drift in process (\d+)")


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(stat.parent.name)] = (
                    (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, ValueError, IndexError):
            continue
    return found


def _at_serving(platform: LocalPlatform) -> tuple[list[int], dict[int, str], int]:
    """What monitoring had loaded when it first answered SERVING: the pids its log names as the
    embedding process, its children, and its resident memory of the embedding process (kB)."""
    monitoring = platform.pid("monitoring")
    assert monitoring is not None
    log = (platform.log_dir / "monitoring.log").read_text(errors="replace")
    loaded = [int(pid) for pid in _LOADED.findall(log)]
    children = _children(monitoring)
    rss = 0
    for pid in loaded:
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            rss = max(rss, int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1)))
    return loaded, children, rss


def test_preload_loads_the_embedding_model_before_serving(tmp_path: Path) -> None:
    # Drift runs rarely here, so that no run loads the model before we look.
    slow = {"LLMOPS_MONITORING_DRIFT_INTERVAL_SECONDS": "3600"}
    with running_platform(
        tmp_path / "on", ["monitoring"], LLMOPS_MONITORING_DRIFT_PRELOAD="true", **slow
    ) as on:
        loaded, children, rss = _at_serving(on)
    assert len(loaded) == 1, f"expected one load of the embedding model before SERVING, log says {loaded}"
    assert loaded[0] in children and "spawn_main" in children[loaded[0]], (
        f"the embedding process {loaded[0]} is not a live child of monitoring: {children}"
    )
    # The model is in that process's memory (MiniLM and torch: far more than a bare interpreter).
    print(f"embedding process resident at SERVING: {rss / 1024:.0f} MB")
    assert rss > 150 * 1024

    with running_platform(tmp_path / "off", ["monitoring"], **slow) as off:
        loaded, children, _ = _at_serving(off)
    assert loaded == [] and not any("spawn_main" in cmd for cmd in children.values()), (
        f"without preload the model was loaded at start: {loaded}, {children}"
    )
