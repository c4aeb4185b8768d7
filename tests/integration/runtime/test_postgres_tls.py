"""The documented PostgreSQL DSN with TLS (`?sslmode=verify-full&sslrootcert=...`) works for every way the services
connect: Alembic migrations (API and projector), the API's pool and dedicated connection, the projector's pool
and its read-side lock, and a server certificate from another CA is refused (issue 13 item 10)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from taifa_api.adapters import database as api_database
from taifa_api.adapters import migrate as api_migrate
from taifa_localstack import Postgres
from taifa_projector.adapters import migrate as projector_migrate
from taifa_projector.adapters.postgres import create_pool as projector_pool
from taifa_projector.adapters.read_side_lock import ReadSideLock

TLS_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def _write_ca(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[tuple[Postgres, Path, Path]]:
    """A PostgreSQL offering TLS with a certificate for localhost/127.0.0.1; (server, its CA file, another CA file)."""
    # Outside pytest's temp root, which a concurrent session may reset to 0700 (the server runs as `postgres`).
    workdir = Path(tempfile.mkdtemp(prefix="taifa-pg-tls-"))
    ca, other_ca = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    chain, key = workdir / "server-chain.pem", workdir / "server-key.pem"
    with open(chain, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(key))
    server = Postgres(workdir / "pg", tls=(chain, key))
    server.start()
    try:
        yield server, _write_ca(ca, workdir / "ca.pem"), _write_ca(other_ca, workdir / "other-ca.pem")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def verify_full(server: Postgres, ca_file: Path) -> str:
    return f"{server.url}?sslmode=verify-full&sslrootcert={ca_file}"


def test_migrations_and_service_connections_work_over_verify_full(tls_postgres) -> None:
    server, ca_file, _ = tls_postgres
    dsn = verify_full(server, ca_file)
    api_migrate.upgrade(dsn)
    projector_migrate.upgrade(dsn)
    # The services' own `migrate` commands take the same DSN from the environment.
    subprocess.run(
        [str(Path(sys.executable).parent / "taifa-projector"), "migrate"],
        env={"TAIFA_DATABASE_URL": dsn, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=120,
    )

    async def connect_every_way() -> list[object]:
        seen: list[object] = []
        pool = await api_database.create_pool(dsn, min_size=1, max_size=2)
        try:
            seen.append(await pool.fetchval(TLS_IN_USE))
            seen.append(await pool.fetchval("SELECT count(*) FROM alembic_version_api"))
        finally:
            await pool.close()
        connection = await api_database.connect(dsn)
        try:
            seen.append(await connection.fetchval(TLS_IN_USE))
        finally:
            await connection.close()
        pool = await projector_pool(dsn, 2)
        try:
            seen.append(await pool.fetchval(TLS_IN_USE))
        finally:
            await pool.close()
        lock = ReadSideLock(dsn, exclusive=False)
        seen.append(await lock.try_acquire())
        await lock.release()
        return seen

    assert asyncio.run(connect_every_way()) == [True, 1, True, True, True]


def test_a_server_certificate_from_another_ca_is_refused(tls_postgres) -> None:
    server, _, other_ca = tls_postgres
    dsn = verify_full(server, other_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        api_migrate.upgrade(dsn)
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(api_database.create_pool(dsn, min_size=1, max_size=1))
