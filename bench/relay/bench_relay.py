"""`make bench-relay`: the relay against a bare aiosmtpd server on loopback, with figures, not assertions.

Scenarios (20 concurrent connections, STARTTLS + AUTH PLAIN on the submission port, aiosmtplib clients):
  (a) one 2 KB message per connection;  (b) 50 messages of 10 KB per connection.
Each scenario also runs on a second relay with usage counting off (TAIFA_RELAY_USAGE_ENABLED=false; sending
limits enforced on both) and prints the CPU per message on/off (issue 16: goal <= +10 %).
For each: messages/s, p50/p99 latency, server CPU seconds and CPU ms per message (relay + its upstream
mail sink together, against the bare server alone), and the ratio relay/bare. Then the server-side CPU
cost of one AUTH, the same for a credential with two secrets (rotated, in its grace period) and a 16-network
allowlist against one with one secret (same run, interleaved), and case A11 of docs/testing.md in full (1,000 AUTHs
each for unknown user, wrong secret, revoked).
Everything runs on real processes: Redis, the mail sink, `taifa-relay run`, the bare server.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
import trustme
from server_cpu import auth_cost, cpu_seconds, timing, tls_client
from taifa_events import hash_secret
from taifa_events.auth_cache import AuthCacheEntry, CachedSecret, auth_key
from taifa_events.events import CredentialLimits
from taifa_events.secrets import new_smtp_password
from taifa_localstack import Redis, ServiceProcess, free_port, wait_until
from taifa_localstack.authcache import rotate_secret, seed_credential, write_later_state

HERE = Path(__file__).resolve().parent
CONCURRENCY = 20
TMPFS = Path("/dev/shm")  # noqa: S108 - only a parent: the sink gets a private mkdtemp directory in it


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]
    cpu: float
    cpu_each: list[float]
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def split(self) -> str:
        relay, sink = (cpu / self.messages * 1e3 for cpu in self.cpu_each)
        return f" (relay {relay:.3f} + sink {sink:.3f})"

    def line(self) -> str:
        return (
            f"  {self.name:<6} {self.rate:8.1f} msg/s   p50 {percentile(self.latencies, 0.5) * 1e3:7.2f} ms   "
            f"p99 {percentile(self.latencies, 0.99) * 1e3:7.2f} ms   server CPU {self.cpu:6.2f} s   "
            f"{self.cpu / self.messages * 1e3:6.3f} ms/msg" + (self.split() if len(self.cpu_each) == 2 else "")
        )


def payload(domain: str, size: int) -> bytes:
    head = f"From: bench@{domain}\r\nTo: sink@dest.example\r\nSubject: bench\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def run_scenario(
    name: str,
    port: int,
    context: ssl.SSLContext,
    user: str,
    password: str,
    domain: str,
    *,
    connections: int,
    per_connection: int,
    size: int,
    pids: list[int],
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
            client = await tls_client(port, context)
            await client.auth_plain(user, password)
            for _ in range(per_connection):
                begun = time.perf_counter() if per_connection > 1 else started
                await client.sendmail(f"bench@{domain}", ["sink@dest.example"], message)
                latencies.append(time.perf_counter() - begun)
            await client.quit()

    cpu_before = [cpu_seconds(pid) for pid in pids]
    client_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    cpu_each = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    return Result(name, connections * per_connection, elapsed, latencies, sum(cpu_each), cpu_each, client_cpu)


def write_credential(client: redis.Redis, *, active: bool = True) -> tuple[str, str, str]:
    seeded = seed_credential(client, f"bench{uuid.uuid4().hex[:8]}.example", active=active)
    return seeded.username, seeded.password, seeded.domain


# An allowlist of 16 networks whose last one holds the load generator's address: every network is tested.
ALLOWLIST = (*(f"10.{n}.0.0/16" for n in range(8)), *(f"2001:db8:{n:x}::/48" for n in range(7)), "127.0.0.0/8")


async def lifecycle_auth_cost(port: int, context: ssl.SSLContext, store: redis.Redis, pid: int, rounds: int) -> None:
    """Server CPU of one AUTH for a credential with one secret and for one with two secrets (a rotation in its
    grace period) and an allowlist, both logging in with a `tmsmtp_` password, measured in alternating rounds in
    the same run (issue 15: goal <= +5 %)."""
    single = seed_credential(store, f"bench{uuid.uuid4().hex[:8]}.example")
    single_password = new_smtp_password()
    only = CachedSecret(id=uuid.uuid4(), hash=hash_secret(single_password), scheme="sha256")
    write_later_state(store, single.username, single.entry, secrets=(only,))
    seeded = seed_credential(store, f"bench{uuid.uuid4().hex[:8]}.example")
    password, rotated = rotate_secret(store, seeded.username, seeded.entry, 86_400)
    write_later_state(store, seeded.username, rotated, allowed_cidrs=ALLOWLIST)
    cases = {"one secret": (single.username, single_password), "two secrets + 16 CIDRs": (seeded.username, password)}
    costs: dict[str, list[float]] = {name: [] for name in cases}
    beyond: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (user, secret) in cases.items():
            # 1,000 AUTHs per measurement: /proc counts CPU in 10 ms ticks, about 2 % of a measurement.
            auth_cpu, noop_cpu, _ = await auth_cost(port, context, user, secret, pid, batches=5)
            costs[name].append(auth_cpu)
            beyond[name].append(auth_cpu - noop_cpu)
    print(f"\nAUTH cost by credential shape (relay process CPU, {rounds} alternating rounds of 1,000 AUTHs each):")
    for name in cases:
        print(
            f"  {name:<24} median {statistics.median(costs[name]) * 1e3:.3f} ms per AUTH "
            f"(mean {statistics.fmean(costs[name]) * 1e3:.3f}), beyond a NOOP "
            f"{statistics.median(beyond[name]) * 1e3:.3f} ms"
        )
    # Each round measures both back to back, so the paired ratio cancels the load other processes add.
    one_secret, two_secrets = (costs[name] for name in cases)
    ratio = statistics.median(b / a for a, b in zip(one_secret, two_secrets, strict=True))
    print(
        f"  two secrets + allowlist vs one secret (median of paired rounds): {(ratio - 1) * 100:+.1f} % (goal <= +5 %)"
    )


def fetch(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def smtp_ready(port: int) -> bool:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=2) as probe:
        return probe.noop()[0] == 250


def sink_maildir_parent(choice: str) -> Path | None:
    """Where the sink's Maildir goes: tmpfs by default (the sink stands in for an upstream MTA on another
    machine; its file-system costs are not the relay's), or the bench's work directory on disk."""
    if choice == "tmpfs" and TMPFS.is_dir():
        return TMPFS
    return None


async def main(
    scale: float,
    timing_samples: int,
    recheck_cache_seconds: float,
    sink_storage: str,
    bare_tls: str,
    lifecycle_rounds: int = 8,
    only_auth_cost: bool = False,
) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    shm = sink_maildir_parent(sink_storage)
    sink_dir = Path(tempfile.mkdtemp(prefix="bench-relay-sink-", dir=shm)) if shm else work
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    issued = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    cert, key, ca_file = work / "relay.crt", work / "relay.key", work / "ca.pem"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(cafile=str(ca_file))

    redis_server = Redis(work / "redis")
    redis_server.start()
    started: list[ServiceProcess] = []
    try:
        sink_port, relay_port, smtps_port, health_port, bare_port = (free_port() for _ in range(5))
        off_port, off_smtps_port, off_health_port = (free_port() for _ in range(3))
        sink = ServiceProcess(
            "mailsink",
            [
                sys.executable,
                "-m",
                "taifa_localstack.mailsink",
                "--port",
                str(sink_port),
                "--maildir",
                str(sink_dir / "Maildir"),
            ],
            work,
        )
        sink.start()
        started.append(sink)
        wait_until(lambda: smtp_ready(sink_port), 20, "mailsink")
        env = {
            "TAIFA_REDIS_URL": redis_server.url,
            "TAIFA_RELAY_HOSTNAME": "relay.bench",
            "TAIFA_RELAY_BIND_HOST": "127.0.0.1",
            "TAIFA_RELAY_SUBMISSION_PORT": str(relay_port),
            "TAIFA_RELAY_SMTPS_PORT": str(smtps_port),
            "TAIFA_RELAY_HEALTH_PORT": str(health_port),
            "TAIFA_RELAY_TLS_CERT_FILE": str(cert),
            "TAIFA_RELAY_TLS_KEY_FILE": str(key),
            "TAIFA_RELAY_UPSTREAM_HOST": "127.0.0.1",
            "TAIFA_RELAY_UPSTREAM_PORT": str(sink_port),
            # The local sink offers no STARTTLS here: the figures are the relay's own cost, as before.
            "TAIFA_RELAY_UPSTREAM_TLS": "none",
            "TAIFA_RELAY_MAX_SESSIONS_PER_CLIENT": "100000",
            "TAIFA_RELAY_MAX_CONNECTIONS_PER_MINUTE": "100000000",
            "TAIFA_RELAY_MAX_AUTH_FAILURES_PER_CONNECTION": "100000000",
            "TAIFA_RELAY_MAX_AUTH_FAILURES_PER_ADDRESS": "100000000",
            "TAIFA_RELAY_MAX_AUTH_FAILURES_PER_ADDRESS_USERNAME": "100000000",
            "TAIFA_RELAY_ERROR_SOFT_LIMIT": "100000000",
            "TAIFA_RELAY_ERROR_HARD_LIMIT": "100000000",
            "TAIFA_RELAY_UPSTREAM_POOL_SIZE": "32",
            "TAIFA_RELAY_DRAIN_GRACE_SECONDS": "2",
            "TAIFA_RELAY_RECHECK_CACHE_SECONDS": str(recheck_cache_seconds),
            "TAIFA_RELAY_PLAN_DAILY_QUOTA_FREE": "1000000000",
            "TAIFA_RELAY_USAGE_ENABLED": "true",
        }
        relay_command = [str(Path(sys.executable).parent / "taifa-relay"), "run"]
        if os.environ.get("BENCH_RELAY_PROFILE"):  # cProfile output, to find the relay's hot spots
            profile = os.environ["BENCH_RELAY_PROFILE"]
            relay_command = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                profile,
                "-m",
                "taifa_relay.entrypoints.cli",
                "run",
            ]
        relay = ServiceProcess(
            "relay",
            relay_command,
            work,
            env=env,
            ready_url=f"http://127.0.0.1:{health_port}/readyz",
        )
        relay.start()
        started.append(relay)
        # The same relay with usage counting off (issue 16: what counting costs per message). Sending limits are
        # enforced in both (the bench credential has per-minute and per-day limits; quotas are set out of reach).
        off_env = {
            **env,
            "TAIFA_RELAY_SUBMISSION_PORT": str(off_port),
            "TAIFA_RELAY_SMTPS_PORT": str(off_smtps_port),
            "TAIFA_RELAY_HEALTH_PORT": str(off_health_port),
            "TAIFA_RELAY_USAGE_ENABLED": "false",
        }
        relay_off = ServiceProcess(
            "relay-usage-off",
            [str(Path(sys.executable).parent / "taifa-relay"), "run"],
            work,
            env=off_env,
            ready_url=f"http://127.0.0.1:{off_health_port}/readyz",
        )
        relay_off.start()
        started.append(relay_off)
        bare = ServiceProcess(
            "bare",
            [sys.executable, str(HERE / "bare_server.py"), str(bare_port), str(cert), str(key), bare_tls],
            work,
        )
        bare.start()
        started.append(bare)
        wait_until(lambda: smtp_ready(bare_port), 20, "bare aiosmtpd")
        assert relay.pid and sink.pid and bare.pid

        store = redis.Redis.from_url(redis_server.url)
        user, password, domain = write_credential(store)
        assert relay_off.pid
        limits = CredentialLimits(messages_per_minute=1_000_000_000, messages_per_day=1_000_000_000)
        seeded_entry = AuthCacheEntry.from_redis(store.hgetall(auth_key(user)))  # type: ignore[arg-type]
        assert seeded_entry is not None
        write_later_state(store, user, seeded_entry, limits=limits)
        targets = {
            "relay": (relay_port, [relay.pid, sink.pid]),
            "relay-usage-off": (off_port, [relay_off.pid, sink.pid]),
            "bare": (bare_port, [bare.pid]),
        }

        print(
            f"make bench-relay: {CONCURRENCY} concurrent connections, STARTTLS (ECDSA P-256) + AUTH PLAIN, "
            f"uvloop on both servers, {os.cpu_count()} CPUs shared with the load generator, "
            f"per-MAIL credential re-check cached {recheck_cache_seconds:g} s, "
            f"sink Maildir in {sink_dir} ({'tmpfs' if shm else 'disk'}, no fsync)"
        )
        print(
            "  relay = `taifa-relay run` (Redis lookups, policy, Received header, logging, metrics) forwarding "
            "to the mail sink (aiosmtpd, Maildir); its CPU is the two processes together.\n"
            "  bare  = stock aiosmtpd on uvloop, same certificate, STARTTLS and AUTH required, any AUTH accepted, "
            "every message answered 250 and dropped (bench/relay/bare_server.py); TLS layer after STARTTLS: "
            + (
                "uvloop native, as in the relay"
                if bare_tls == "native"
                else "aiosmtpd's own (pure-Python asyncio "
                "SSLProtocol; the relay uses uvloop's native TLS, cheaper per record: --bare-tls native to compare "
                "like with like)"
            )
        )
        scenarios = [
            ("(a) 1 x 2 KB per connection", int(1000 * scale), 1, 2048),
            ("(b) 50 x 10 KB per connection", max(CONCURRENCY, int(40 * scale)), 50, 10240),
        ]
        if only_auth_cost:
            scenarios = []
        for title, connections, per_connection, size in scenarios:
            # Warm up both (connection pools, caches), then measure relay and bare back to back.
            for port, _ in targets.values():
                await run_scenario(
                    "warm",
                    port,
                    context,
                    user,
                    password,
                    domain,
                    connections=CONCURRENCY,
                    per_connection=min(per_connection, 5),
                    size=size,
                    pids=[],
                )
            results = {}
            for name, (port, pids) in targets.items():
                results[name] = await run_scenario(
                    name,
                    port,
                    context,
                    user,
                    password,
                    domain,
                    connections=connections,
                    per_connection=per_connection,
                    size=size,
                    pids=pids,
                )
            print(f"\n{title}: {connections * per_connection} messages each")
            for result in results.values():
                print(result.line())
            ratio = results["relay"].rate / results["bare"].rate
            print(
                f"  ratio relay/bare: {ratio:.2f} (goal >= 0.85); relay+sink CPU per message "
                f"{results['relay'].cpu / results['relay'].messages * 1e3:.3f} ms vs bare "
                f"{results['bare'].cpu / results['bare'].messages * 1e3:.3f} ms"
            )
            on, off = results["relay"], results["relay-usage-off"]
            print(
                f"  usage counting on/off: {on.rate:.0f} vs {off.rate:.0f} msg/s; relay+sink CPU per message "
                f"{on.cpu / on.messages * 1e3:.3f} vs {off.cpu / off.messages * 1e3:.3f} ms, ratio "
                f"{(on.cpu / on.messages) / (off.cpu / off.messages):.3f} (goal <= 1.10)"
            )
            # The load generator shares the 2 cores: with every core busy, msg/s is bounded by the CPU
            # per message of all processes together, so this is the ratio the machine allows at best.
            machine = {name: (r.cpu + r.client_cpu) / r.messages for name, r in results.items()}
            print(
                f"  load generator CPU per message: {results['relay'].client_cpu / results['relay'].messages * 1e3:.3f}"
                f" ms (relay run), {results['bare'].client_cpu / results['bare'].messages * 1e3:.3f} ms (bare run); "
                f"whole-machine CPU ratio bare/relay {machine['bare'] / machine['relay']:.2f} "
                "(the msg/s ratio a CPU-bound 2-core machine allows)"
            )
        print("\n  Reference (issue 7): Postfix 3.7 submission on a similar 2-core machine: ~270 msg/s (a), ~640 (b).")

        auth_cpu, noop_cpu, _ = await auth_cost(relay_port, context, user, password, relay.pid)
        print(
            f"\nServer-side cost of one AUTH PLAIN (relay process CPU, 1,000 successful AUTHs): "
            f"{auth_cpu * 1e3:.3f} ms; a NOOP on the same connections: {noop_cpu * 1e3:.3f} ms; "
            f"AUTH beyond a NOOP: {(auth_cpu - noop_cpu) * 1e3:.3f} ms (goal <= 0.3 ms)"
        )
        text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{health_port}/metrics")
        count = total = 0.0
        for line in text.splitlines():
            if line.startswith("taifa_relay_auth_seconds_count"):
                count = float(line.split()[-1])
            if line.startswith("taifa_relay_auth_seconds_sum"):
                total = float(line.split()[-1])
        if count:
            print(
                f"  relay's own AUTH wall time (lookup round trip included), mean over {int(count)}: "
                f"{total / count * 1e3:.3f} ms"
            )

        await lifecycle_auth_cost(relay_port, context, store, relay.pid, lifecycle_rounds)

        if not only_auth_cost:
            revoked_user, revoked_password, _ = write_credential(store, active=False)
            await timing(
                relay_port,
                context,
                {
                    "unknown": (f"ghost-{user}", password),
                    "wrong": (user, "wrong-" + password),
                    "revoked": (revoked_user, revoked_password),
                },
                timing_samples,
            )
        store.close()
    finally:
        for process in reversed(started):
            process.stop()
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sink_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of connections")
    parser.add_argument("--timing-samples", type=int, default=1000)
    parser.add_argument(
        "--recheck-cache-seconds", type=float, default=0.0, help="TAIFA_RELAY_RECHECK_CACHE_SECONDS for the relay"
    )
    parser.add_argument(
        "--sink-storage",
        choices=["tmpfs", "disk"],
        default="tmpfs",
        help="where the mail sink writes its Maildir: /dev/shm (default) or the work directory under $TMPDIR",
    )
    parser.add_argument(
        "--bare-tls",
        choices=["aiosmtpd", "native"],
        default="aiosmtpd",
        help="the bare server's TLS layer after STARTTLS: aiosmtpd's own (default) or uvloop's, as the relay",
    )
    parser.add_argument(
        "--lifecycle-rounds", type=int, default=8, help="alternating rounds of the AUTH cost by credential shape"
    )
    parser.add_argument(
        "--only-auth-cost",
        action="store_true",
        help="skip the throughput scenarios and the A11 timing: only the AUTH cost figures",
    )
    parser.add_argument("--quick", action="store_true", help="a short run: --scale 0.3 --timing-samples 100")
    args = parser.parse_args()
    if args.quick:
        args.scale, args.timing_samples = 0.3, 100
    asyncio.run(
        main(
            args.scale,
            args.timing_samples,
            args.recheck_cache_seconds,
            args.sink_storage,
            args.bare_tls,
            args.lifecycle_rounds,
            args.only_auth_cost,
        )
    )
