"""The load generator of `make bench-relay` and what one measured run gives: 20 concurrent aiosmtplib clients, each
taking connections from a queue (connect, STARTTLS, EHLO, AUTH PLAIN, N messages, QUIT), with the server-side CPU
read from /proc before and after."""

from __future__ import annotations

import asyncio
import math
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from server_cpu import tls_client

CONCURRENCY = 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Target:
    """A server under test: where to connect, how to log in, and its CPU (one figure per process group counted)."""

    name: str
    port: int
    login: str
    password: str
    cpu: Callable[[], list[float]]
    parts: tuple[str, ...]
    # Called after the clients are done and before the CPU is read: a queueing server delivers what it accepted.
    settle: Callable[[], None] = lambda: None


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]
    cpu_each: list[float]
    parts: tuple[str, ...]
    client_cpu: float = 0.0

    @property
    def cpu(self) -> float:
        return sum(self.cpu_each)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.messages * 1e3

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e3


@dataclass
class Summary:
    """The medians of one target's alternating runs of one load."""

    name: str
    runs: list[Result] = field(default_factory=list)

    def median(self, value: Callable[[Result], float]) -> float:
        return statistics.median(value(run) for run in self.runs)

    def line(self) -> str:
        first = self.runs[0]
        split = " + ".join(
            f"{part} {statistics.median(r.cpu_each[i] / r.messages * 1e3 for r in self.runs):.3f}"
            for i, part in enumerate(first.parts)
        )
        rate, p50 = self.median(lambda r: r.rate), self.median(lambda r: r.p(0.5))
        return (
            f"  {self.name:<16} {rate:8.1f} msg/s   p50 {p50:7.2f} ms"
            f"   p99 {self.median(lambda r: r.p(0.99)):7.2f} ms   CPU {self.median(lambda r: r.cpu_ms):6.3f} ms/msg"
            f" ({split})"
        )


def payload(domain: str, size: int) -> bytes:
    head = f"From: bench@{domain}\r\nTo: sink@dest.example\r\nSubject: bench\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def run_load(
    target: Target,
    context: ssl.SSLContext,
    domain: str,
    *,
    connections: int,
    per_connection: int,
    size: int,
    measure: bool = True,
) -> Result:
    message = payload(domain, size)
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(connections):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            client = await tls_client(target.port, context)
            await client.auth_plain(target.login, target.password)
            for _ in range(per_connection):
                begun = time.perf_counter() if per_connection > 1 else started
                await client.sendmail(f"bench@{domain}", ["sink@dest.example"], message)
                latencies.append(time.perf_counter() - begun)
            await client.quit()

    cpu_before = target.cpu() if measure else []
    client_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    await asyncio.to_thread(target.settle)
    cpu_each = [after - before for after, before in zip(target.cpu(), cpu_before, strict=True)] if measure else []
    return Result(target.name, connections * per_connection, elapsed, latencies, cpu_each, target.parts, client_cpu)
