"""Each service image, built from the working tree, run as the manifests run it: read-only root, UID 10001, every
capability dropped, no privilege escalation, /tmp the only writable place; ports published on 127.0.0.1 only.

The infrastructure is the stand-ins of deploy/podman/standins (what `make compose-up` uses where nothing can be
pulled) on a private podman network: Redis, PostgreSQL, the Kafka-protocol broker.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import trustme
from taifa_localstack import TOPIC_PARTITIONS

from tests.images.podman_support import Pod, compose_image, console_scripts, image, pod, podman, poll, services

pytestmark = [pytest.mark.images, pytest.mark.timeout(1500)]

DB_PASSWORD = "images-test-only"  # a throwaway container's password
DB_URL = f"postgresql://taifa:{DB_PASSWORD}@postgres:5432/taifa"
INFRA_ENV = {
    "TAIFA_DATABASE_URL": DB_URL,
    "TAIFA_REDIS_URL": "redis://redis:6379/0",
    "TAIFA_KAFKA_BOOTSTRAP": "kafka:9092",
}


def signing_env() -> dict[str, str]:
    """The session's event signing key (tests/conftest.py), given to the API and the projector."""
    return {k: os.environ[k] for k in ("TAIFA_EVENT_SIGNING_KEYS", "TAIFA_EVENT_SIGNING_KEY_ID")}


def test_the_images_print_their_python_and_the_base_digest(built_images: str) -> None:
    for service in services():
        assert f"{image(service)}: Python 3.11." in built_images
    assert "base " in built_images and ": sha256:" in built_images


@pytest.mark.parametrize("service", services())
def test_every_command_of_the_image_answers_help(built_images: str, service: str) -> None:
    commands = console_scripts(service)
    assert commands, f"services/{service}/pyproject.toml declares no [project.scripts]"
    with pod(f"taifa-help-{service}") as p:
        for command in commands:
            result = p.run(command, image(service), "--help", entrypoint=command, detach=False, timeout=60)
            assert result.returncode == 0, f"{command} --help in {image(service)}:\n{result.stdout}\n{result.stderr}"
            assert "usage" in result.stdout.lower(), result.stdout


@pytest.fixture(scope="module")
def infra(built_images: str) -> Iterator[Pod]:
    """Redis, PostgreSQL (also on a loopback port, for the test's own queries) and the broker with the topics."""
    with pod("taifa-images") as p:
        p.run("redis", compose_image("redis"), "redis-server", "--save", "", hardened=False)
        p.run(
            "postgres",
            compose_image("postgres"),
            environment={"POSTGRES_USER": "taifa", "POSTGRES_PASSWORD": DB_PASSWORD, "POSTGRES_DB": "taifa"},
            publish=[5432],
            hardened=False,
        )
        p.run(
            "kafka",
            compose_image("kafka"),
            environment={
                "KAFKA_LISTENERS": "PLAINTEXT://:9092",
                "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
            },
            hardened=False,
        )
        pong = lambda: p.exec("redis", "redis-cli", "ping", check=False) == "PONG\n"  # noqa: E731
        poll("redis", pong, 60, lambda: p.logs("redis"))
        poll("postgres", lambda: "accepting" in p.exec("postgres", "pg_isready", check=False), 60,
             lambda: p.logs("postgres"))  # fmt: skip
        for topic, partitions in TOPIC_PARTITIONS.items():
            poll(f"topic {topic}", lambda t=topic, n=partitions: create_topic(p, t, n), 60, lambda: p.logs("kafka"))
        yield p


def create_topic(p: Pod, topic: str, partitions: int) -> bool:
    """The compose file's way: the broker image's kafka-topics.sh (idempotent with --if-not-exists)."""
    created = podman(
        "exec", p.container("kafka"), "/opt/kafka/bin/kafka-topics.sh", "--bootstrap-server", "kafka:9092",
        "--create", "--if-not-exists", "--topic", topic, "--partitions", str(partitions), check=False,
    )  # fmt: skip
    return created.returncode == 0


def readyz(p: Pod, name: str, port: int, timeout: float = 60) -> None:
    url = f"http://127.0.0.1:{p.host_port(name, port)}/readyz"
    poll(f"{name} {url} 200", lambda: httpx.get(url, timeout=3).status_code == 200, timeout, lambda: p.logs(name))


def test_the_relay_with_redis_and_a_certificate_listens_is_ready_and_offers_starttls(
    infra: Pod, tmp_path: Path
) -> None:
    ca = trustme.CA()
    certs = tmp_path / "tls"
    certs.mkdir(mode=0o755)
    certs.chmod(0o755)  # read by UID 10001 through the bind mount
    leaf = ca.issue_cert("mail.localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(certs / "tls.crt")
    leaf.private_key_pem.write_to_path(certs / "tls.key")
    for file in certs.iterdir():
        file.chmod(0o644)
    infra.run(
        "relay",
        image("relay"),
        "run",
        environment={
            "TAIFA_REDIS_URL": "redis://redis:6379/0",
            "TAIFA_RELAY_HOSTNAME": "mail.localhost",
            "TAIFA_RELAY_BIND_HOST": "0.0.0.0",
            "TAIFA_RELAY_SUBMISSION_PORT": "2587",
            "TAIFA_RELAY_SMTPS_PORT": "2465",
            "TAIFA_RELAY_HEALTH_PORT": "9101",
            "TAIFA_RELAY_TLS_CERT_FILE": "/etc/taifa/tls/tls.crt",
            "TAIFA_RELAY_TLS_KEY_FILE": "/etc/taifa/tls/tls.key",
            "TAIFA_RELAY_UPSTREAM_HOST": "upstream.invalid",
            "TAIFA_RELAY_UPSTREAM_PORT": "25",
        },
        publish=[2587, 2465, 9101],
        volumes=[f"{certs}:/etc/taifa/tls:ro"],
    )
    readyz(infra, "relay", 9101)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", infra.host_port("relay", 2587), local_hostname="images.test", timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls"), smtp.esmtp_features
        assert not smtp.has_extn("auth")  # AUTH only after TLS
        code, _ = smtp.starttls(context=context)
        assert code == 220
        smtp.ehlo()
        assert smtp.has_extn("auth")
    with smtplib.SMTP_SSL("127.0.0.1", infra.host_port("relay", 2465), context=context, timeout=30) as smtps:
        assert smtps.ehlo()[0] == 250


def migrate(p: Pod, service: str) -> None:
    """The image's `migrate` command, as the migrations Job runs it, to completion."""
    done = p.run(f"migrate-{service}", image(service), "migrate", environment={"TAIFA_DATABASE_URL": DB_URL},
                 detach=False, timeout=180)  # fmt: skip
    assert done.returncode == 0, f"{service} migrate:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def api(infra: Pod) -> Pod:
    migrate(infra, "credential-api")
    infra.run(
        "api",
        image("credential-api"),
        "serve",
        environment={
            **INFRA_ENV,
            **signing_env(),
            "TAIFA_API_HOST": "0.0.0.0",
            "TAIFA_API_PORT": "8080",
            "TAIFA_API_JWT_SECRET": "images-test-only-jwt-secret-0123456789abcdef",
        },
        publish=[8080],
    )
    return infra


def test_the_api_migrates_postgresql_and_answers_readyz(api: Pod) -> None:
    readyz(api, "api", 8080)
    tables = asyncio.run(fetch(api, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
    assert tables and int(tables) > 3


def test_the_projector_starts_and_consumes_what_the_api_publishes(api: Pod) -> None:
    migrate(api, "projector")
    api.run(
        "projector",
        image("projector"),
        "run",
        environment={**INFRA_ENV, **signing_env(), "TAIFA_PROJECTOR_HEALTH_HOST": "0.0.0.0"},
        publish=[9102],
    )
    readyz(api, "projector", 9102, timeout=90)
    readyz(api, "api", 8080)
    # An operator creates an account with the image's own CLI; the API publishes AccountCreated from its outbox.
    admin = api.run("admin", image("credential-api"), "account", "create", "--name", "images", "--plan", "pro",
                    environment={**INFRA_ENV, **signing_env()}, entrypoint="taifa-admin", detach=False)  # fmt: skip
    assert admin.returncode == 0, f"taifa-admin account create:\n{admin.stdout}\n{admin.stderr}"
    consumed = "SELECT coalesce(sum(next_offset), 0) FROM projector_offsets WHERE topic = 'taifa.accounts'"
    poll("the projector consumed the AccountCreated event", lambda: asyncio.run(fetch(api, consumed)), 90,
         lambda: api.logs("projector") + api.logs("api"))  # fmt: skip
    assert api.running("projector")


async def fetch(p: Pod, sql: str) -> object:
    connection = await asyncpg.connect(
        host="127.0.0.1", port=p.host_port("postgres", 5432), user="taifa", password=DB_PASSWORD, database="taifa",
        timeout=10,
    )  # fmt: skip
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()
