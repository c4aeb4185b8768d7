"""A child process in its own process group, with a log file, a readiness deadline and a clean stop.

`ServiceProcess` runs one of our services that way, `run_once` a one-shot command such as a `migrate`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceFailed(RuntimeError):
    """A local service did not start or did not become ready; the message carries its log tail."""


# Ports handed out by this process: a service binds its port a moment after free_port() chose it, so a second call in
# between must not choose the same one.
_handed_out: set[int] = set()
# Below the kernel's ephemeral range; no port under this is chosen (well-known and registered services live there).
_LOWEST_PORT = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral range.

    Not an ephemeral port on purpose: podman publishes a container's port on a random ephemeral host port through a
    DNAT rule, and a rule left behind by a container removed in a hurry (podman 4.3 leaks some) keeps taking the
    connections to that port from a process that binds it later, which then looks refused although it listens.
    Outside that range neither podman's random ports nor client sockets' source ports ever land.
    """
    low, _ = _ephemeral_range()
    if low - _LOWEST_PORT < 1000:  # no room below the ephemeral range here: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    candidates = range(_LOWEST_PORT, low)
    start = random.randrange(len(candidates))
    for offset in range(len(candidates)):
        port = candidates[(start + offset) % len(candidates)]
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise ServiceFailed(f"no free TCP port on 127.0.0.1 between {_LOWEST_PORT} and {low}")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """One long-running child: `start()` waits until `ready()` holds, `stop()` ends its whole group."""

    name = "process"

    def __init__(self, workdir: Path, *, user: str | None = None) -> None:
        self.workdir = workdir
        self.user = user
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # Subclasses say how to run and how to tell it is ready.
    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    @property
    def cwd(self) -> Path:
        return self.workdir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self._proc = subprocess.Popen(
                list(self.command()),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env(),
                start_new_session=True,  # its own process group: stop() reaches every child
                user=self.user,
            )
        finally:
            log.close()
        wait_until(self.ready, timeout, f"{self.name} ready", on_fail=self._failure, alive=self.running)

    def _failure(self, reason: str) -> ServiceFailed:
        self.stop()
        return ServiceFailed(f"{self.name} failed: {reason}\n--- {self.log_path} ---\n{log_tail(self.log_path)}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait(5)
        # Children that outlived the leader still belong to the group.
        self._signal_group(proc, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole group at once (crash tests)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait(10)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    on_fail: Callable[[str], Exception] | None = None,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `condition` until it holds or `timeout` passes (or `alive` turns false)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise (on_fail or ServiceFailed)(f"exited before {what}")
        try:
            if condition():
                return
        except Exception as exc:  # noqa: BLE001 - any failure of a probe just means "not yet"
            last_error = f" (last error: {type(exc).__name__}: {exc})"
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
    raise (on_fail or ServiceFailed)(f"not {what} within {timeout:.0f}s{last_error}")


class ServiceProcess(ManagedProcess):
    """One of our own services (or any command) started with extra environment, ready when `ready_url` answers 200."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
    ) -> None:
        self.name = name
        super().__init__(workdir)
        self._command = list(command)
        self._env = {**os.environ, **(env or {})}
        self.ready_url = ready_url

    def command(self) -> Sequence[str]:
        return self._command

    def env(self) -> dict[str, str] | None:
        return self._env

    def ready(self) -> bool:
        if self.ready_url is None:
            return self.running()
        import urllib.request

        with urllib.request.urlopen(self.ready_url, timeout=1) as response:  # noqa: S310 - loopback URL we built
            return bool(response.status == 200)


def run_once(command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a one-shot command (e.g. a `migrate`) with extra environment; its output goes into the error if it fails."""
    result = subprocess.run(
        list(command), env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise ServiceFailed(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout
