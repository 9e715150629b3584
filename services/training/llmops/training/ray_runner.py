"""Ray: the cluster the service trains on, and one job as a Ray Train ``TorchTrainer`` run.

Locally the service starts a Ray head itself (``ray start --head --block`` in its own session, see
:meth:`TrainingCluster._launch_head`, then ``ray.init(address=...)``): loopback only, no dashboard,
token auth, a short temporary folder (UNIX socket paths are limited to 107 characters). At stop it
disconnects, stops the head, and kills by pid whatever Ray process is left (``gcs_server`` can ignore
SIGTERM). With ``LLMOPS_RAY_ADDRESS`` it joins a cluster instead and only disconnects at stop; there
the workers import ``llmops.training`` (the cluster's image must hold it) and read the dataset, the
base model and the job's checkpoint/adapter folders by the paths or URLs the service passes, so those
must be on storage every node reaches (on one machine, local paths are fine).

A job runs ``TorchTrainer(train_loop_per_worker, ...).fit()`` in a daemon thread (fit blocks). A
:class:`JobControl` actor connects the workers and the service: rank 0 pushes each step's progress
and the final result into it, the service drains it, and the service's cancel / preempt request is
read from it by rank 0 every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from llmops.core.settings import RaySettings
from llmops.training.daemon_threads import in_daemon_thread
from llmops.training.spec import Resources
from llmops.training.trainer.loop import LoopResult, Progress, StopKind, TrainConfig, run_training

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class JobControl:
    """The mailbox between a job's workers and the service (one actor per job run)."""

    def __init__(self) -> None:
        self._progress: list[dict[str, Any]] = []
        self._stop: StopKind | None = None
        self._result: dict[str, Any] | None = None

    def report(self, progress: dict[str, Any]) -> None:
        self._progress.append(progress)

    def drain(self) -> list[dict[str, Any]]:
        out, self._progress = self._progress, []
        return out

    def request_stop(self, kind: StopKind) -> None:
        # A cancel is final; a later preempt (service stopping) must not turn it into a resumable stop.
        if self._stop != "cancel":
            self._stop = kind

    def stop_request(self) -> StopKind | None:
        return self._stop

    def finish(self, result: dict[str, Any]) -> None:
        self._result = result

    def result(self) -> dict[str, Any] | None:
        return self._result


class _RayHooks:
    """LoopHooks of a Ray Train worker: progress to the control actor, stop requests from it."""

    def __init__(self, control: Any) -> None:
        self._control = control

    def report(self, progress: Progress) -> None:
        # Fire and forget: calls from one caller run in order, and finish() is awaited at the end.
        self._control.report.remote(progress.as_dict())

    def poll(self) -> StopKind | None:
        return ray.get(self._control.stop_request.remote())


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker function: the trainer's loop with DDP, results to the control actor."""
    import ray.train

    control = config["control"]
    result = run_training(TrainConfig(**config["train"]), _RayHooks(control), distributed=True)
    if ray.train.get_context().get_world_rank() == 0:
        ray.get(control.finish.remote(result.as_dict()))


@dataclass(frozen=True)
class RunOutcome:
    """How a fit ended: the loop's result (None if the workers never finished) and any error."""

    result: LoopResult | None
    error: str | None
    stop_request: StopKind | None


def short_temp_dir(data_dir: Path) -> Path:
    """``/tmp/llmops-ray-<8 hex>``: short enough for Ray's socket paths, one per data folder."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"llmops-ray-{digest}"


class TrainingCluster:
    """The Ray the service trains on (see the module docstring)."""

    def __init__(
        self,
        settings: RaySettings,
        data_dir: Path,
        *,
        storage_path: Path,
        object_store_mb: int = 256,
        poll_seconds: float = 0.5,
    ) -> None:
        self.settings = settings
        self.temp_dir = short_temp_dir(data_dir)
        self.storage_path = storage_path
        self.object_store_mb = object_store_mb
        self.poll_seconds = poll_seconds
        self.local = not settings.address
        self._controls: dict[str, Any] = {}
        self._head: subprocess.Popen[bytes] | None = None

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self, attempts: int = 3, timeout: float = 120.0) -> None:
        """Start a local Ray head and connect to it (or connect to ``LLMOPS_RAY_ADDRESS``).

        Ray gives its raylet 30 s to register, which a machine whose cores are busy can miss: a local
        start is tried ``attempts`` times, cleaning up what a failed try left.
        """
        self.storage_path.mkdir(parents=True, exist_ok=True)
        if not self.local:
            await asyncio.to_thread(
                ray.init, address=self.settings.address, configure_logging=False, log_to_driver=False
            )
            _restore_python_signal_handlers()
            log.info("Ray joined at %s: %s", self.settings.address, ray.cluster_resources())
            return
        for attempt in range(1, attempts + 1):
            # Spawned from the event loop's thread on purpose: the head's parent-death signal is tied
            # to the thread that forked it, and this one lives as long as the service.
            self._launch_head()
            try:
                await asyncio.to_thread(self._connect, timeout)
                _restore_python_signal_handlers()
                break
            except Exception as exc:
                await asyncio.to_thread(self.stop)
                if attempt == attempts:
                    raise RuntimeError(f"cannot start a local Ray in {self.temp_dir}: {exc}") from exc
                log.warning("starting Ray failed (%s); retrying (%d/%d)", exc, attempt, attempts)
        log.info("Ray started in %s: %s", self.temp_dir, ray.cluster_resources())

    def _launch_head(self) -> None:
        """``ray start --head --block`` in its own session, with a token, dying with the service.

        Its own session: `make down` signals the service's process group, and a Ray killed under a
        running service takes the service down with it (the driver exits when its raylet dies) before
        it can checkpoint the job and close its connections; the service stops Ray itself, last.
        If the service is killed outright, the head gets SIGTERM (parent-death signal) and stops
        every Ray process.
        """
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(mode=0o700, parents=True)
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # Ray 2.60 authenticates with a token; the driver (this process) must present the same one.
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        os.environ.update(auth)
        # On SIGTERM the head would first "drain" the node for 30 s (for Ray Serve); the service has
        # already stopped its job by then, so it tears down at once.
        head_env = {**os.environ, **auth, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        command = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={_free_loopback_port()}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=false",
            # Ray's fixed default ports (10001, 8265, 52365) would collide with any other Ray here.
            f"--ray-client-server-port={_free_loopback_port()}",
            f"--dashboard-port={_free_loopback_port()}",
            f"--dashboard-agent-listen-port={_free_loopback_port()}",
            f"--num-cpus={self.settings.num_cpus or os.cpu_count() or 1}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        parent = os.getpid()
        with open(self.temp_dir / "head.log", "wb") as out:
            self._head = subprocess.Popen(
                command,
                env=head_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only a prctl call runs between fork and exec (as Ray does for its own children).
                preexec_fn=lambda: _die_with_parent(parent),
            )

    def _connect(self, timeout: float) -> None:
        """Wait for the head to publish its address, then connect this process to it."""
        head = self._head
        assert head is not None
        address_file = self.temp_dir / "ray_current_cluster"
        deadline = time.monotonic() + timeout
        while not address_file.is_file() or not address_file.read_text().strip():
            if head.poll() is not None:
                raise RuntimeError(f"ray start exited with {head.returncode}: {self._head_log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ray start did not come up in {timeout:.0f}s: {self._head_log_tail()}")
            time.sleep(0.2)
        # Ray reads its auth settings once and caches them; the token path was set after `import ray`,
        # so refresh them (as Ray's own test utilities do; internal API of the pinned Ray 2.60).
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        ray.init(address=address_file.read_text().strip(), configure_logging=False, log_to_driver=False)

    def _head_log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.temp_dir / "head.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def stop(self) -> None:
        """Disconnect; locally also stop the head, end any Ray process left, remove the temp dir."""
        if ray.is_initialized():
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 - stopping anyway
                log.warning("ray.shutdown failed", exc_info=True)
        if not self.local:
            return
        left = {pid: _start_time(pid) for pid in self._started_processes()}
        head = self._head
        if head is not None and head.poll() is None:
            # The head's SIGTERM handler stops the raylet, GCS and the rest, gracefully.
            head.terminate()
            try:
                head.wait(10)
            except subprocess.TimeoutExpired:
                head.kill()
                head.wait(5)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(p, t) for p, t in left.items()):
            time.sleep(0.1)
        for pid, start_time in left.items():
            if _alive(pid, start_time):
                log.info("killing Ray process %d left after shutdown", pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._head = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _started_processes(self) -> list[int]:
        """The head, every process naming this service's Ray temp folder, and their descendants."""
        roots: set[int] = set()
        if self._head is not None:
            roots.add(self._head.pid)
        marker = str(self.temp_dir).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        roots.add(int(entry.name))
                except OSError:
                    continue
        roots.discard(os.getpid())
        found = set(roots)
        children = _children_by_parent()
        todo = list(roots)
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return sorted(found)

    def healthy(self) -> bool:
        """Whether the local Ray node still runs (always True for a remote cluster)."""
        if not ray.is_initialized():
            return False
        return not self.local or (self._head is not None and self._head.poll() is None)

    def resources(self) -> dict[str, float]:
        return dict(ray.cluster_resources())

    # --- jobs -------------------------------------------------------------------------------------

    async def run(
        self,
        job_id: str,
        run_name: str,
        config: TrainConfig,
        resources: Resources,
        on_progress: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> RunOutcome:
        """Run one job to its end (finished, stopped or failed), passing each progress to ``on_progress``."""
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        control = JobControl.remote()
        self._controls[job_id] = control
        use_gpu = resources.gpus_per_worker > 0
        per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker}
        if use_gpu:
            per_worker["GPU"] = resources.gpus_per_worker
        # Each worker uses the CPUs it was given (Ray sets OMP_NUM_THREADS=1 otherwise).
        config = dataclasses.replace(config, num_threads=max(1, int(resources.cpus_per_worker)))
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"train": dataclasses.asdict(config), "control": control},
            scaling_config=ScalingConfig(
                num_workers=resources.num_workers, use_gpu=use_gpu, resources_per_worker=per_worker
            ),
            run_config=RunConfig(
                storage_path=str(self.storage_path),
                name=run_name,
                # The service resumes a job itself (from its checkpoints) when it restarts; a failure
                # inside one run is reported, not retried blindly.
                failure_config=FailureConfig(max_failures=0),
            ),
        )
        fit = in_daemon_thread(trainer.fit)
        error: str | None = None
        try:
            while True:
                done, _ = await asyncio.wait({fit}, timeout=self.poll_seconds)
                for progress in await control.drain.remote():
                    await on_progress(progress)
                if done:
                    break
            try:
                fit.result()
            except Exception as exc:  # noqa: BLE001 - any failure of the run is the job's failure
                error = failure_reason(exc)
            result = await control.result.remote()
            stop_request = await control.stop_request.remote()
        except Exception as exc:  # noqa: BLE001 - the control actor is gone (Ray stopped under us)
            return RunOutcome(None, error or f"lost contact with the training run: {exc}", None)
        finally:
            self._controls.pop(job_id, None)
            with contextlib.suppress(Exception):
                ray.kill(control)
        return RunOutcome(LoopResult(**result) if result else None, error, stop_request)

    async def request_stop(self, job_id: str, kind: StopKind) -> bool:
        """Ask the running job ``job_id`` to stop; False when it is not running here."""
        control = self._controls.get(job_id)
        if control is None:
            return False
        try:
            await control.request_stop.remote(kind)
        except Exception:  # noqa: BLE001 - the run ended meanwhile
            return False
        return True


def failure_reason(exc: BaseException) -> str:
    """A short reason from a Ray Train failure: the first worker's exception, else the error's text."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank = min(failures)
        worker_exc = failures[rank]
        cause = getattr(worker_exc, "cause", None) or worker_exc
        return f"worker {rank} failed: {type(cause).__name__}: {str(cause).strip().splitlines()[-1][:1000]}"
    text = str(exc).strip() or type(exc).__name__
    return text[-2000:]


def _restore_python_signal_handlers() -> None:
    """Give SIGTERM and SIGINT back to Python (and so to the service's graceful stop).

    Connecting a driver installs Ray's C++ failure-signal handler for SIGTERM, which prints a stack
    and kills the process: `make down` would then skip checkpointing the job and closing the Kafka
    consumer. Re-registering the Python-level handlers (asyncio's) reinstalls CPython's own C handler;
    asyncio's wakeup fd is untouched. Must run in the main thread.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(sig)
        if handler is not None:
            signal.signal(sig, handler)


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Resolved before any fork: the child must not load libraries between fork and exec.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In the forked child: get SIGTERM when the service dies (Linux prctl PR_SET_PDEATHSIG)."""
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        # The service died between fork and prctl: nobody would stop this head.
        os._exit(1)


def _children_by_parent() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name is in parentheses and may hold spaces: split after the last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], start time is [19])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def _alive(pid: int, start_time: str | None = None) -> bool:
    """Running (not a zombie) and, when ``start_time`` is given, still the same process (no pid reuse)."""
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":
        return False
    return start_time is None or fields[19] == start_time
