"""The platform on one machine: the development Kafka broker and the eight services as processes.

``make up`` / ``llmops up`` start them on 127.0.0.1 and wait until every service reports SERVING on
the gRPC health service; ``make down`` stops them by process id (SIGTERM, then SIGKILL after a grace
period). Tests use the same class with their own folders and free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmops.core.settings import (
    DEFAULT_GRPC_PORTS,
    DEFAULT_METRICS_PORTS,
    DEFAULT_SERVING_HTTP_PORT,
    LOOPBACK,
)

SERVICES: tuple[str, ...] = tuple(DEFAULT_GRPC_PORTS)
BROKER = "kafka"
DEFAULT_KAFKA_PORT = 19092
LAYOUT_FILE = "platform.json"


class PlatformError(RuntimeError):
    """A process did not start, or did not become healthy in time."""


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    Ports the kernel hands out for ``bind(0)`` come from the same range it uses for outgoing
    connections, so one may be taken again before the process that should listen on it starts.
    """
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randint(20000, min(low, 32768) - 1)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise PlatformError("no free loopback port found between 20000 and the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def group_alive(group: int) -> bool:
    """Whether a live (not zombie) process is in process group ``group``.

    A stopped leader is not enough: the broker's leader is a small launcher whose engine, in the same
    group, may still be shutting down (and still answering) after the launcher has exited.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


@dataclass
class LocalPlatform:
    run_dir: Path
    data_dir: Path
    models_dir: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    grpc_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_GRPC_PORTS))
    metrics_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_METRICS_PORTS))
    http_port: int = DEFAULT_SERVING_HTTP_PORT
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def at(cls, run_dir: Path, data_dir: Path, models_dir: Path) -> LocalPlatform:
        """The platform whose run folder is ``run_dir``: the ports it was started on (kept in
        ``platform.json`` there), or the default ports for one not started yet."""
        try:
            layout = json.loads((run_dir / LAYOUT_FILE).read_text())
        except (OSError, ValueError):
            return cls(run_dir=run_dir, data_dir=data_dir, models_dir=models_dir)
        return cls(
            run_dir=run_dir,
            data_dir=data_dir,
            models_dir=models_dir,
            kafka_port=int(layout["kafka_port"]),
            grpc_ports={**DEFAULT_GRPC_PORTS, **layout["grpc_ports"]},
            metrics_ports={**DEFAULT_METRICS_PORTS, **layout["metrics_ports"]},
            http_port=int(layout.get("http_port", DEFAULT_SERVING_HTTP_PORT)),
        )

    def _save_layout(self) -> None:
        layout = {
            "kafka_port": self.kafka_port,
            "grpc_ports": dict(self.grpc_ports),
            "metrics_ports": dict(self.metrics_ports),
            "http_port": self.http_port,
        }
        (self.run_dir / LAYOUT_FILE).write_text(json.dumps(layout, indent=1))

    # --- layout --------------------------------------------------------------------------------

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.kafka_port}"

    def address(self, service: str) -> str:
        return f"{LOOPBACK}:{self.grpc_ports[service]}"

    @property
    def openai_base_url(self) -> str:
        """Serving's OpenAI-compatible API, as an OpenAI client's ``base_url``."""
        return f"http://{LOOPBACK}:{self.http_port}/v1"

    def api_key(self) -> str:
        """The local API key, made once per run folder (0600) and given to every service."""
        path = self.run_dir / "api-key"
        if not path.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LLMOPS_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "LLMOPS_API_KEYS": self.api_key(),
                # The key services use when they call each other (labeling's judge calls serving).
                "LLMOPS_API_KEY": self.api_key(),
                "LLMOPS_DATA_DIR": str(self.data_dir),
                "LLMOPS_MODELS_DIR": str(self.models_dir),
                "LLMOPS_RUN_DIR": str(self.run_dir),
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env["LLMOPS_SERVING_HTTP_PORT"] = str(self.http_port)
        for name in SERVICES:
            env[f"LLMOPS_{name.upper()}_GRPC_PORT"] = str(self.grpc_ports[name])
            env[f"LLMOPS_{name.upper()}_METRICS_PORT"] = str(self.metrics_ports[name])
            env[f"LLMOPS_{name.upper()}_ADDRESS"] = self.address(name)
        env.update(self.extra_env)
        return env

    # --- processes -----------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _spawn(self, name: str, argv: list[str]) -> int:
        if (pid := self.pid(name)) is not None:
            return pid
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # So that `llmops up --only ...`, `status` and `down` find the processes on these ports.
        self._save_layout()
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env(),
            start_new_session=True,
        )
        log.close()
        self._pid_file(name).write_text(str(proc.pid))
        return proc.pid

    def start_broker(self, timeout: float = 30) -> None:
        binary = shutil.which("noida-db", path=str(Path(sys.executable).parent)) or shutil.which("noida-db")
        if binary is None:
            raise PlatformError("the development Kafka broker (noida-db) is not installed; run `make setup`")
        self._spawn(
            BROKER,
            [
                binary,
                "start",
                "--only",
                "kafka",
                "--host",
                LOOPBACK,
                "--kafka-port",
                str(self.kafka_port),
                "--data-dir",
                str(self.data_dir / "kafka"),
            ],
        )
        self._wait(BROKER, lambda: _port_open(self.kafka_port), timeout)

    def start_services(self, names: Iterable[str] = SERVICES, timeout: float = 240) -> None:
        names = list(names)
        for name in names:
            self._spawn(name, [sys.executable, "-m", f"llmops.{name}"])
        for name in names:
            self._wait(name, lambda n=name: self.health(n) == "SERVING", timeout)

    def up(self, names: Iterable[str] = SERVICES, timeout: float = 240) -> None:
        self.start_broker()
        self.start_services(names, timeout)

    def _wait(self, name: str, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            if self.pid(name) is None:
                raise PlatformError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            time.sleep(0.25)
        raise PlatformError(f"{name} was not ready after {timeout:.0f}s:\n{self.log_tail(name)}")

    def health(self, name: str) -> str:
        """SERVING, NOT_SERVING, or DOWN when nothing answers."""
        with grpc.insecure_channel(self.address(name)) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return "DOWN"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, name: str, grace: float = 15) -> bool:
        """Stop one process and its group by its pid: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns once nothing of the group is left running."""
        pid = self.pid(name)
        self._pid_file(name).unlink(missing_ok=True)
        if pid is None:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.1)
        if group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and group_alive(pid):
                time.sleep(0.1)
        return True

    def down(self) -> list[str]:
        stopped = [name for name in reversed(SERVICES) if self.stop(name)]
        if self.stop(BROKER):
            stopped.append(BROKER)
        return stopped

    def status(self) -> dict[str, tuple[int | None, str]]:
        rows: dict[str, tuple[int | None, str]] = {
            BROKER: (self.pid(BROKER), "UP" if _port_open(self.kafka_port) else "DOWN")
        }
        for name in SERVICES:
            rows[name] = (self.pid(name), self.health(name))
        return rows


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0
