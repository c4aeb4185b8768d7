"""Helpers shared by the credential API's integration tests (tenants, verified domains, the running app)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from taifa_api.application import use_cases
from taifa_api.application.ports import UnitOfWorkFactory
from taifa_api.entrypoints.http.app import create_app
from taifa_api.settings import Settings


def venv_bin(name: str) -> str:
    """A console script of this virtualenv (the tests may run without it on PATH)."""
    return str(Path(sys.executable).parent / name)


def create_database(server_url: str) -> str:
    """CREATE DATABASE with a unique name on the server of `server_url`; returns its DSN."""
    name = f"api_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return server_url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Tenant:
    account_id: uuid.UUID
    key_id: uuid.UUID
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class ApiHarness:
    app: Any
    client: httpx.AsyncClient
    settings: Settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app.state.container.pool

    @property
    def uow(self) -> UnitOfWorkFactory:
        return self.app.state.container.uow

    async def tenant(self, plan: str = "pro") -> Tenant:
        outcome = await use_cases.create_account(self.uow, f"tenant-{uuid.uuid4().hex[:6]}", plan, "test")
        issued = outcome.value
        return Tenant(issued.account_id, issued.key_id, issued.api_key)

    async def domain(self, tenant: Tenant, name: str | None = None) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/domains", json={"name": name or f"d{uuid.uuid4().hex[:10]}.example"}, headers=tenant.headers
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def verified_domain(self, tenant: Tenant, name: str | None = None) -> dict[str, Any]:
        domain = await self.domain(tenant, name)
        await use_cases.force_verify_domain(self.uow, uuid.UUID(domain["id"]), "test")
        return domain

    async def credential(self, tenant: Tenant, domain_id: str) -> httpx.Response:
        return await self.client.post("/v1/smtp/credentials", json={"domain_id": domain_id}, headers=tenant.headers)


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[ApiHarness]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://api.test"
        ) as client,
    ):
        yield ApiHarness(app=app, client=client, settings=settings)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def event_rows(database_url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = [dict(row) for row in await conn.fetch("SELECT * FROM event_store ORDER BY position")]
        for row in rows:
            row["data"] = json.loads(row["data"])
            assert isinstance(row["data"], dict)
        return rows
    finally:
        await conn.close()


async def consume_all(bootstrap: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every message on the project topics from the beginning, until `expected` have been seen."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from taifa_events import topics

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics.ALL_TOPICS for p in consumer.partitions_for_topic(topic) or ()
        ]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p)
                for topic in topics.ALL_TOPICS
                for p in consumer.partitions_for_topic(topic) or ()
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: list[Any] = []
        async with asyncio.timeout(timeout):
            while len(seen) < expected:
                for messages in (await consumer.getmany(timeout_ms=300)).values():
                    seen.extend(messages)
        return seen
    finally:
        await consumer.stop()
