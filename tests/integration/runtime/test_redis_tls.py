"""A Redis behind a private CA (deploy/README.md): the `rediss://` URL names the CA file (`?ssl_ca_certs=...`), and
the services' clients verify the server with it: the runtime's client (API, projector) and the relay's own
connections. Without it, the server is refused."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from redis.exceptions import ConnectionError as RedisConnectionError
from taifa_localstack import free_port, wait_until
from taifa_localstack.infrastructure import find_binary
from taifa_relay.adapters.redis_connection import relay_redis
from taifa_runtime.redis import redis_client


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, Path]]:
    """A redis-server on a TLS port only, with a certificate of a private CA; (port, the CA file)."""
    workdir = Path(tempfile.mkdtemp(prefix="taifa-redis-tls-"))
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(workdir / "key.pem"))
    port = free_port()
    server = subprocess.Popen(
        [find_binary("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(workdir / "cert.pem"), "--tls-key-file", str(workdir / "key.pem"),
         "--tls-ca-cert-file", str(workdir / "ca.pem"), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 10, "redis-server with TLS listening", alive=lambda: server.poll() is None)
        yield port, workdir / "ca.pem"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_every_client_verifies_redis_with_the_ca_the_url_names(tls_redis) -> None:
    port, ca_file = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"
    for client in (redis_client(url, timeout=5), relay_redis(url, timeout=5)):
        try:
            assert await client.ping()
            await client.set("taifa:test:tls", "1")
            assert await client.get("taifa:test:tls") == b"1"
        finally:
            await client.aclose()
    unverified = redis_client(f"rediss://127.0.0.1:{port}/0", timeout=5)  # the system CAs: not this server's
    try:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.wait_for(unverified.ping(), 10)
    finally:
        await unverified.aclose()
