"""Server-side figures for `make bench-relay`: process CPU from /proc, the CPU cost of one AUTH, and the
case A11 (docs/testing.md) timing comparison (unknown user / wrong secret / revoked credential)."""

from __future__ import annotations

import base64
import math
import os
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import aiosmtplib

CLK_TCK = os.sysconf("SC_CLK_TCK")


async def tls_client(port: int, context: ssl.SSLContext) -> aiosmtplib.SMTP:
    """A load-generator client: connected to the relay (or the bare server), STARTTLS done, EHLO sent."""
    client = aiosmtplib.SMTP(
        hostname="localhost", port=port, tls_context=context, start_tls=True, timeout=60, local_hostname="bench.test"
    )
    await client.connect()
    await client.ehlo()
    return client


def cpu_seconds(*pids: int) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root`, its live descendants, and every child it has reaped (its cutime/cstime): a
    monotonic total for a server whose processes come and go (Postfix, relay workers)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
        todo.extend(children.get(pid, ()))
    return total / CLK_TCK


async def auth_cost(
    port: int,
    context: ssl.SSLContext,
    user: str,
    password: str,
    cpu: Callable[[], float],
    batches: int = 5,
    batch: int = 200,
) -> tuple[float, float, float]:
    """Server CPU (`cpu()`: seconds so far) per AUTH and per NOOP (same prepared TLS connections)."""
    auth_cpu = noop_cpu = 0.0
    for _ in range(batches):
        clients = []
        for _ in range(batch):
            client = await tls_client(port, context)
            clients.append(client)
        before = cpu()
        for client in clients:
            await client.noop()
        noop_cpu += cpu() - before
        before = cpu()
        for client in clients:
            await client.auth_plain(user, password)
        auth_cpu += cpu() - before
        for client in clients:
            client.close()
    n = batches * batch
    return auth_cpu / n, noop_cpu / n, 0.0


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic and its two-sided p-value (normal approximation; n is large)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    return t, 2 * (1 - statistics.NormalDist().cdf(abs(t)))


async def timing(port: int, context: ssl.SSLContext, cases: dict[str, tuple[str, str]], samples: int) -> None:
    client = await tls_client(port, context)
    times: dict[str, list[float]] = {name: [] for name in cases}
    replies = set()
    for _ in range(samples):
        for name, (user, password) in cases.items():
            arg = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            started = time.perf_counter()
            response = await client.execute_command(b"AUTH", b"PLAIN", arg.encode())
            times[name].append(time.perf_counter() - started)
            replies.add((response.code, response.message))
    client.close()
    medians = {name: statistics.median(v) for name, v in times.items()}
    print(f"\nA11 timing ({samples} AUTHs each, interleaved; replies seen: {sorted(replies)})")
    for name, median in medians.items():
        print(f"  {name:<8} median {median * 1e6:8.1f} us   mean {statistics.fmean(times[name]) * 1e6:8.1f} us")
    names = list(cases)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            t, p = welch(times[first], times[second])
            spread = abs(medians[first] - medians[second]) / min(medians[first], medians[second]) * 100
            print(f"  {first} vs {second}: medians differ {spread:4.1f} %, Welch t={t:+.2f} p={p:.3f}")
