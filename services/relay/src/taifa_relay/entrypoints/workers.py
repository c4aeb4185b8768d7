"""`taifa-relay run --workers N` (TAIFA_RELAY_WORKERS): N relay processes sharing the SMTP listeners.

Each worker is a whole relay (`taifa-relay worker --index i`): its own event loop, Redis pools, upstream pool and
revocation subscription, listening with SO_REUSEPORT on the same submission and implicit-TLS ports, so that the
kernel spreads new connections over the workers. Worker i serves health and metrics on the health port + i. This
supervisor only starts them, forwards SIGTERM/SIGINT (each worker drains its own sessions) and waits; a worker that
exits on its own takes the others down with it (exit status 1), so the pod restarts as a whole rather than run short.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from taifa_runtime.lifecycle import on_stop_signals

log = logging.getLogger("taifa.relay.workers")


def worker_command(index: int) -> list[str]:
    return [sys.executable, "-m", "taifa_relay.entrypoints.cli", "worker", "--index", str(index)]


def supervise(count: int) -> int:
    """Run `count` workers until a signal stops them (0) or one of them exits on its own (1)."""
    workers = [subprocess.Popen(worker_command(index)) for index in range(count)]
    log.info("relay workers started", extra={"workers": count, "pids": [worker.pid for worker in workers]})
    stopping = False

    def forward(signum: int) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    on_stop_signals(forward)
    status = 0
    running = {worker.pid: worker for worker in workers}
    while running:
        pid, _ = os.wait()
        worker = running.pop(pid, None)
        if worker is None:
            continue
        worker.returncode = 0  # reaped here: Popen must not wait for it again
        if not stopping:
            log.error("relay worker exited, stopping the others", extra={"pid": pid})
            status = 1
            forward(signal.SIGTERM)
    return status
