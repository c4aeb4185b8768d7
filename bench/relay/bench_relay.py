"""`make bench-relay`: the relay against Postfix 3.7 and a bare aiosmtpd server on loopback, figures, not assertions.

Servers (all on one ECDSA P-256 certificate, STARTTLS required, AUTH PLAIN/LOGIN only after TLS):
  relay   = `taifa-relay run` (Redis lookups and counters, policy, Received header, logging, metrics) forwarding to the
            mail sink; its CPU is the relay (all workers) + the sink + Redis.
  postfix = a private Postfix instance (bench/relay/postfix.py): Cyrus SASL sasldb, `permit_sasl_authenticated,
            reject`, relayhost = the same sink; its CPU is every Postfix process + the sink + Redis, counted once its
            queue has been delivered.
  bare    = stock aiosmtpd, any AUTH accepted, every message answered 250 and dropped (bench/relay/bare_server.py).
Loads (20 concurrent connections, aiosmtplib clients): (a) one 2 KB message per connection; (b) 50 messages of 10 KB
per connection. Each load runs `--rounds` times per server, the servers alternating (the order rotates), and the
medians are printed with the relay/Postfix ratios (the median of the per-round ratios: the machine is shared).
Then the server CPU of one AUTH beyond a NOOP (relay, Postfix, bare), the AUTH cost by credential shape (issue 15), and
case A11 of docs/testing.md in full (1,000 AUTHs each for unknown user, wrong secret, revoked).
Everything started here is stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import postfix
import redis
from auth_figures import a11_timing, auth_beyond_noop, lifecycle_auth_cost, relay_auth_wall_time, write_credential
from load import CONCURRENCY, Result, Summary, Target, run_load
from server_cpu import cpu_seconds, tree_cpu_seconds
from servers import RelayUnderTest, relay_env, sink_maildir_parent, start_bare, start_sink, write_certificate
from spy import Profiler
from taifa_events.auth_cache import AuthCacheEntry, auth_key
from taifa_events.events import CredentialLimits
from taifa_localstack import Redis, ServiceProcess, free_port
from taifa_localstack.authcache import write_later_state

LOADS = (
    ("(a) 1 x 2 KB per connection", 1000, 1, 2048),
    ("(b) 50 x 10 KB per connection", 40, 50, 10240),
)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def paired(runs: dict[str, list[Result]], a: str, b: str, value: str) -> float:
    """The median over rounds of a's figure / b's figure in the same round."""
    pick = {"rate": lambda r: r.rate, "cpu": lambda r: r.cpu_ms}[value]
    return statistics.median(pick(x) / pick(y) for x, y in zip(runs[a], runs[b], strict=True))


async def run_loads(
    targets: list[Target],
    context: ssl.SSLContext,
    domain: str,
    scale: float,
    rounds: int,
    profile: tuple[Path, int] | None = None,
    native: bool = False,
    only: str | None = None,
) -> list[tuple[str, dict[str, Summary]]]:
    table = []
    for title, connections, per_connection, size in LOADS:
        if only is not None and title[1] != only:
            continue
        connections = max(CONCURRENCY, int(connections * scale))
        for target in targets:  # warm-up: connection pools, caches, Postfix's processes
            await run_load(target, context, domain, connections=CONCURRENCY, per_connection=2, size=size, measure=False)
        summaries = {target.name: Summary(target.name) for target in targets}
        for n in range(rounds):
            order = targets[n % len(targets) :] + targets[: n % len(targets)]
            for target in order:
                result = await run_load(
                    target, context, domain, connections=connections, per_connection=per_connection, size=size
                )
                summaries[target.name].runs.append(result)
        if profile is not None:
            profiler = Profiler(profile[1], profile[0] / f"relay-{title[1]}.txt", native=native)
            await run_load(
                targets[0], context, domain, connections=connections, per_connection=per_connection, size=size
            )
            profiler.stop()
        print(f"\n{title}: {connections * per_connection} messages per run, medians of {rounds} alternating runs")
        for summary in summaries.values():
            print(summary.line())
        runs = {name: s.runs for name, s in summaries.items()}
        if "postfix" in runs:
            print(
                f"  relay/postfix msgs/s {paired(runs, 'relay', 'postfix', 'rate'):.2f} (goal >= 1.5); "
                f"CPU per message relay/postfix {paired(runs, 'relay', 'postfix', 'cpu'):.2f} (goal <= 0.5)"
            )
        print(
            f"  relay/bare msgs/s {paired(runs, 'relay', 'bare', 'rate'):.2f}; "
            f"CPU per message relay/bare {paired(runs, 'relay', 'bare', 'cpu'):.2f}"
        )
        if "relay-usage-off" in runs:
            print(f"  usage counting on/off, CPU per message {paired(runs, 'relay', 'relay-usage-off', 'cpu'):.3f}")
        if "relay-baseline" in runs:
            cpu, rate = (paired(runs, "relay", "relay-baseline", value) for value in ("cpu", "rate"))
            print(f"  relay/relay-baseline (--baseline-src): CPU per message {cpu:.3f}, msgs/s {rate:.3f}")
        client = statistics.median(r.client_cpu / r.messages * 1e3 for r in runs["relay"])
        print(f"  load generator CPU per message (relay runs): {client:.3f} ms (shares the {os.cpu_count()} CPUs)")
        table.append((title, summaries))
    return table


def print_table(table: list[tuple[str, dict[str, Summary]]]) -> None:
    print("\n| load | relay msgs/s | Postfix msgs/s | relay/Postfix | CPU ms/msg relay / Postfix | bare msgs/s |")
    print("|---|---|---|---|---|---|")
    for title, s in table:
        runs = {name: summary.runs for name, summary in s.items()}
        pf_rate = f"{s['postfix'].median(lambda r: r.rate):.0f}" if "postfix" in s else "-"
        ratio = f"{paired(runs, 'relay', 'postfix', 'rate'):.2f}" if "postfix" in s else "-"
        pf_cpu = f"{s['postfix'].median(lambda r: r.cpu_ms):.2f}" if "postfix" in s else "-"
        print(
            f"| {title} | {s['relay'].median(lambda r: r.rate):.0f} | {pf_rate} | {ratio} | "
            f"{s['relay'].median(lambda r: r.cpu_ms):.2f} / {pf_cpu} | {s['bare'].median(lambda r: r.rate):.0f} |"
        )


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    shm = sink_maildir_parent(args.sink_storage)
    sink_dir = Path(tempfile.mkdtemp(prefix="bench-relay-sink-", dir=shm)) if shm else work
    cert, key, ca_file = write_certificate(work)
    context = ssl.create_default_context(cafile=str(ca_file))
    redis_server = Redis(work / "redis")
    redis_server.start()
    started: list[ServiceProcess] = []
    instance: postfix.PostfixInstance | None = None
    try:
        sink, sink_port = start_sink(work, sink_dir / "Maildir")
        started.append(sink)
        env = relay_env(redis_server.url, cert, key, sink_port, args.recheck_cache_seconds)
        relays = [RelayUnderTest("relay", work, env, args.workers)]
        if args.usage_off:
            relays.append(RelayUnderTest("relay-usage-off", work, {**env, "TAIFA_RELAY_USAGE_ENABLED": "false"}))
        if args.baseline_src:
            baseline = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
            relays.append(RelayUnderTest("relay-baseline", work, baseline, args.workers))
        for relay in relays:
            relay.process.start()
            started.append(relay.process)
        bare, bare_port = start_bare(work, cert, key, args.bare_tls)
        started.append(bare)
        why_not = postfix.available() if not args.no_postfix else "--no-postfix"
        if why_not is None:
            queue_parent = shm if args.postfix_queue == "tmpfs" else None
            instance = postfix.PostfixInstance(work / "postfix", free_port(), sink_port, cert, key, queue_parent)
            instance.start()

        store = redis.Redis.from_url(redis_server.url)
        user, password, domain = write_credential(store)
        # Limits on (as a customer would have them) but out of reach: one load generator stands for many clients.
        limits = CredentialLimits(messages_per_minute=1_000_000_000, messages_per_day=1_000_000_000)
        entry = AuthCacheEntry.from_redis(store.hgetall(auth_key(user)))  # type: ignore[arg-type]
        assert entry is not None
        write_later_state(store, user, entry, limits=limits)

        def shared() -> list[float]:
            return [cpu_seconds(sink.pid or 0), cpu_seconds(redis_server.pid or 0)]

        targets = [
            Target(
                r.process.name,
                r.port,
                user,
                password,
                lambda r=r: [tree_cpu_seconds(r.pid), *shared()],
                ("relay", "sink", "redis"),
            )
            for r in relays
        ]
        if instance is not None:
            pf = instance
            targets.append(
                Target(
                    "postfix",
                    pf.port,
                    pf.login,
                    pf.password,
                    lambda: [pf.cpu_seconds(), *shared()],
                    ("postfix", "sink", "redis"),
                    settle=pf.wait_delivered,
                )
            )
        targets.append(Target("bare", bare_port, user, password, lambda: [cpu_seconds(bare.pid or 0)], ("bare",)))

        print(
            f"make bench-relay: {CONCURRENCY} concurrent connections, STARTTLS (ECDSA P-256) + AUTH PLAIN, "
            f"{os.cpu_count()} CPUs shared with the load generator; relay: {args.workers} worker(s), uvloop, "
            f"per-MAIL re-check cached {args.recheck_cache_seconds:g} s; sink Maildir in {sink_dir} "
            f"({'tmpfs' if shm else 'disk'}, no fsync); "
            + (
                f"postfix {postfix_version()}: queue on {args.postfix_queue}"
                if instance is not None
                else f"postfix not run: {why_not}"
            )
            + f"; bare TLS layer: {args.bare_tls}"
        )
        table = (
            []
            if args.only_auth_cost
            else await run_loads(
                targets,
                context,
                domain,
                args.scale,
                args.rounds,
                (args.profile, relays[0].pid) if args.profile else None,
                args.profile_native,
                args.only_load,
            )
        )
        if table:
            print_table(table)

        relay = relays[0]
        auth_targets = {t.name: (t.port, t.login, t.password, (lambda t=t: t.cpu()[0])) for t in targets}
        auth_targets.pop("relay-usage-off", None)
        await auth_beyond_noop(auth_targets, context, args.auth_rounds)
        relay_auth_wall_time(await asyncio.to_thread(fetch, f"http://127.0.0.1:{relay.health_port}/metrics"))
        await lifecycle_auth_cost(
            relay.port, context, store, lambda: tree_cpu_seconds(relay.pid), args.lifecycle_rounds
        )
        if not args.only_auth_cost:
            await a11_timing(relay.port, context, store, user, password, args.timing_samples)
        store.close()
    finally:
        if instance is not None:
            instance.stop()
        for process in reversed(started):
            process.stop()
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sink_dir, ignore_errors=True)


def postfix_version() -> str:
    out = subprocess.run(
        ["/usr/sbin/postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server and load (medians)")
    parser.add_argument("--workers", type=int, default=1, help="TAIFA_RELAY_WORKERS of the relay under test")
    parser.add_argument("--timing-samples", type=int, default=1000)
    parser.add_argument("--auth-rounds", type=int, default=3, help="alternating rounds of the AUTH-beyond-NOOP cost")
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
        "--postfix-queue",
        choices=["disk", "tmpfs"],
        default="disk",
        help="Postfix's queue directory: the work directory on disk (default, as deployed) or /dev/shm",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the relay in one extra run per load; collapsed stacks into this directory"
    )
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: py-spy --native (C frames of uvloop and OpenSSL too; pauses the relay at each sample)",
    )
    parser.add_argument("--only-load", choices=["a", "b"], help="run only load (a) or (b)")
    parser.add_argument("--no-postfix", action="store_true", help="run without Postfix (relay vs bare only)")
    parser.add_argument(
        "--usage-off", action="store_true", help="also a relay with TAIFA_RELAY_USAGE_ENABLED=false (issue 16 figure)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also a relay whose taifa_relay package comes from this directory (PYTHONPATH: services/relay/src of a "
        "`git clone --shared` checked out at an older commit), alternating with the tree's relay: paired before/after",
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
        "--only-auth-cost", action="store_true", help="skip the loads and the A11 timing: only the AUTH cost figures"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short run: --scale 0.3 --timing-samples 100 --lifecycle-rounds 2"
    )
    args = parser.parse_args()
    if args.quick:
        args.scale, args.timing_samples, args.lifecycle_rounds = 0.3, 100, 2
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
