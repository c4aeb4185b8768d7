"""The console scripts as an operator runs them: `taifa-api migrate` and `taifa-admin` (JSON output)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from api_support import create_database, venv_bin
from taifa_api.adapters import migrate
from taifa_localstack import ServiceFailed, run_once


def admin(database_url: str, *args: str) -> dict:
    return json.loads(run_once([venv_bin("taifa-admin"), *args], env={"TAIFA_DATABASE_URL": database_url}))


def test_migrate_creates_the_schema_once_and_is_idempotent(postgres_server) -> None:
    url = create_database(postgres_server.url)
    env = {"TAIFA_DATABASE_URL": url}
    assert json.loads(run_once([venv_bin("taifa-api"), "migrate"], env=env))["migrated"] is True
    run_once([venv_bin("taifa-api"), "migrate"], env=env)

    async def inspect() -> tuple[list[str], str]:
        conn = await asyncpg.connect(url)
        try:
            tables = [
                r["tablename"]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            ]
            return tables, await conn.fetchval("SELECT version_num FROM alembic_version_api")
        finally:
            await conn.close()

    tables, version = asyncio.run(inspect())
    assert {
        "event_store",
        "accounts",
        "api_keys",
        "domains",
        "credentials",
        "publisher_progress",
        "alembic_version_api",
    } <= set(tables)
    assert version == ScriptDirectory(migrate.SCRIPT_LOCATION).get_current_head()


async def test_event_store_is_append_only(api_db, api) -> None:
    await api.tenant()
    conn = await asyncpg.connect(api_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM event_store") > 0
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("TRUNCATE event_store")
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("DELETE FROM event_store")
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("UPDATE event_store SET event_type = 'x'")
    finally:
        await conn.close()


async def test_admin_commands_drive_the_api(api_db, api) -> None:
    created = await asyncio.to_thread(
        admin, api_db, "account", "create", "--name", "Wizara ya Afya", "--plan", "starter"
    )
    assert set(created) == {"account_id", "key_id", "api_key"}
    assert created["api_key"].startswith("tm_")
    first = {"Authorization": f"Bearer {created['api_key']}"}
    domain = (
        await api.client.post("/v1/domains", json={"name": f"{uuid.uuid4().hex[:6]}.go.ke"}, headers=first)
    ).json()
    assert (
        await api.client.post("/v1/smtp/credentials", json={"domain_id": domain["id"]}, headers=first)
    ).status_code == 400

    verified = await asyncio.to_thread(admin, api_db, "domain", "verify", "--force", domain["id"])
    assert verified["status"] == "verified"
    assert (
        await api.client.post("/v1/smtp/credentials", json={"domain_id": domain["id"]}, headers=first)
    ).status_code == 201

    second = await asyncio.to_thread(admin, api_db, "apikey", "create", "--account", created["account_id"])
    assert set(second) == {"key_id", "api_key"}
    other = {"Authorization": f"Bearer {second['api_key']}"}
    assert (await api.client.get("/v1/domains", headers=other)).status_code == 200

    revoked = await asyncio.to_thread(admin, api_db, "apikey", "revoke", "--key-id", created["key_id"])
    assert revoked["revoked"] is True
    assert (await api.client.get("/v1/domains", headers=first)).status_code == 401
    assert (await api.client.get("/v1/domains", headers=other)).status_code == 200
    types = [
        r["event_type"]
        for r in await api.pool.fetch(
            "SELECT event_type FROM event_store WHERE stream_id = $1 ORDER BY position",
            uuid.UUID(created["account_id"]),
        )
    ]
    assert types == ["AccountCreated", "ApiKeyIssued", "ApiKeyIssued", "ApiKeyRevoked"]


def test_admin_refuses_unknown_plans_and_ids(api_db) -> None:
    with pytest.raises(ServiceFailed):
        admin(api_db, "account", "create", "--name", "x", "--plan", "platinum")
    with pytest.raises(ServiceFailed, match="not_found"):
        admin(api_db, "apikey", "create", "--account", str(uuid.uuid4()))
    with pytest.raises(ServiceFailed, match="not_found"):
        admin(api_db, "domain", "verify", "--force", str(uuid.uuid4()))
    result = subprocess.run(
        [venv_bin("taifa-admin"), "domain", "verify", str(uuid.uuid4())],
        env={"TAIFA_DATABASE_URL": api_db, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def _refusal(database_url: str, *args: str) -> tuple[int, dict]:
    result = subprocess.run(
        [venv_bin("taifa-admin"), *args],
        env={"TAIFA_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, json.loads(result.stderr.strip().splitlines()[-1])


async def test_force_verify_exits_non_zero_with_a_json_error_when_refused(api_db, api) -> None:
    alice, bob = await api.tenant(), await api.tenant()
    name = f"taken-{uuid.uuid4().hex[:6]}.example"
    await api.verified_domain(alice, name)
    bobs = await api.domain(bob, name)
    before = await api.pool.fetchval("SELECT count(*) FROM event_store")
    code, error = await asyncio.to_thread(_refusal, api_db, "domain", "verify", "--force", bobs["id"])
    assert code != 0 and error["error"]["code"] == "domain_taken"
    assert await api.pool.fetchval("SELECT count(*) FROM event_store") == before

    released = await api.domain(bob)
    assert (await api.client.delete(f"/v1/domains/{released['id']}", headers=bob.headers)).status_code == 204
    code, error = await asyncio.to_thread(_refusal, api_db, "domain", "verify", "--force", released["id"])
    assert code != 0 and error["error"]["code"] == "domain_released"
    code, error = await asyncio.to_thread(_refusal, api_db, "domain", "verify", "--force", str(uuid.uuid4()))
    assert code != 0 and error["error"]["code"] == "not_found"


async def test_operator_release_deactivates_the_domains_credentials(api_db, api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    credential = (await api.credential(tenant, domain["id"])).json()
    released = await asyncio.to_thread(admin, api_db, "domain", "release", domain["id"])
    assert released == {"domain_id": domain["id"], "released": True, "events": 2}
    reason = await api.pool.fetchval(
        "SELECT data->>'reason' FROM event_store WHERE event_type = 'DomainReleased' AND stream_id = $1",
        uuid.UUID(domain["id"]),
    )
    active = await api.pool.fetchval(
        "SELECT is_active FROM credentials WHERE credential_id = $1", uuid.UUID(credential["id"])
    )
    assert (reason, active) == ("operator", False)
    code, error = await asyncio.to_thread(_refusal, api_db, "domain", "release", domain["id"])
    assert code != 0 and error["error"]["code"] == "not_found"


async def test_operator_suspends_resumes_and_rotates_a_credential_with_json_output(api_db, api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    credential = (await api.credential(tenant, domain["id"])).json()
    suspended = await asyncio.to_thread(
        admin, api_db, "credential", "suspend", credential["id"], "--reason", "abuse report #42"
    )
    assert (suspended["status"], suspended["suspension_reason"], suspended["changed"]) == (
        "suspended",
        "abuse report #42",
        True,
    )
    again = await asyncio.to_thread(admin, api_db, "credential", "suspend", credential["id"])
    assert (again["status"], again["changed"]) == ("suspended", False)
    resumed = await asyncio.to_thread(admin, api_db, "credential", "resume", credential["id"])
    assert (resumed["status"], resumed["suspension_reason"], resumed["changed"]) == ("active", None, True)

    rotated = await asyncio.to_thread(
        admin, api_db, "credential", "rotate", credential["id"], "--grace-period-seconds", "60"
    )
    assert (
        rotated["password"].startswith("tmsmtp_") and rotated["previous_secret"]["id"] == credential["secrets"][0]["id"]
    )
    assert [s["id"] for s in rotated["secrets"]][1] == rotated["previous_secret"]["id"]
    stored = await api.pool.fetchval(
        "SELECT secret_hash FROM credential_secrets WHERE credential_id = $1 AND expires_at IS NULL",
        uuid.UUID(credential["id"]),
    )
    from taifa_events import hash_secret

    assert stored == hash_secret(rotated["password"])
    types = [
        r["event_type"]
        for r in await api.pool.fetch(
            "SELECT event_type FROM event_store WHERE stream_id = $1 ORDER BY position", uuid.UUID(credential["id"])
        )
    ]
    assert types == ["CredentialCreated", "CredentialSuspended", "CredentialResumed", "CredentialSecretRotated"]


async def test_operator_credential_commands_exit_non_zero_with_a_json_error_when_refused(api_db, api) -> None:
    tenant = await api.tenant()
    domain = await api.verified_domain(tenant)
    credential = (await api.credential(tenant, domain["id"])).json()
    await asyncio.to_thread(admin, api_db, "credential", "rotate", credential["id"])
    code, error = await asyncio.to_thread(_refusal, api_db, "credential", "rotate", credential["id"])
    assert code != 0 and error["error"]["code"] == "rotation_in_progress"
    code, error = await asyncio.to_thread(_refusal, api_db, "credential", "suspend", str(uuid.uuid4()))
    assert code != 0 and error["error"]["code"] == "not_found"
    code, error = await asyncio.to_thread(
        _refusal, api_db, "credential", "suspend", credential["id"], "--reason", "x" * 201
    )
    assert code != 0 and error["error"]["code"] == "validation_error"
    assert (
        await api.client.delete(f"/v1/smtp/credentials/{credential['id']}", headers=tenant.headers)
    ).status_code == 204
    for command in ("suspend", "resume", "rotate"):
        code, error = await asyncio.to_thread(_refusal, api_db, "credential", command, credential["id"])
        assert code != 0 and error["error"]["code"] == "credential_inactive"


def test_migration_0004_gives_existing_credentials_their_first_secret_under_the_derived_id(postgres_server) -> None:
    from taifa_events.secrets import initial_secret_id

    url = create_database(postgres_server.url)
    migrate.upgrade(url, "0003")
    account, domain, active, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def seed() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO accounts VALUES ($1, 'a', 'pro', now())", account)
            await conn.execute(
                "INSERT INTO domains (domain_id, account_id, name, status, verification_name, verification_value, "
                "created_at) VALUES ($1, $2, 'm.example', 'verified', '_taifa.m.example', 'v', now())",
                domain,
                account,
            )
            for credential_id, is_active in ((active, True), (gone, False)):
                await conn.execute(
                    "INSERT INTO credentials (credential_id, account_id, domain_id, username, secret_hash, is_active, "
                    "created_at) VALUES ($1, $2, $3, 'u@m.example', $4, $5, now())",
                    credential_id,
                    account,
                    domain,
                    "ab" * 32,
                    is_active,
                )
        finally:
            await conn.close()

    async def inspect() -> list[dict]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT c.credential_id, c.status, s.secret_id, s.secret_hash, s.expires_at FROM credentials c "
                "JOIN credential_secrets s USING (credential_id) ORDER BY c.is_active DESC"
            )
            return [dict(row) for row in rows]
        finally:
            await conn.close()

    asyncio.run(seed())
    migrate.upgrade(url)
    rows = asyncio.run(inspect())
    assert [(r["credential_id"], r["status"], r["secret_id"]) for r in rows] == [
        (active, "active", initial_secret_id(active)),
        (gone, "deactivated", initial_secret_id(gone)),
    ]
    assert {(r["secret_hash"], r["expires_at"]) for r in rows} == {("ab" * 32, None)}


def test_a_blank_account_name_is_refused_with_a_message_about_the_name(api_db) -> None:
    """It said "plan must be one of ..." for a valid plan and a blank name (a review's probe)."""
    import os

    for name, plan, about in (("   ", "pro", "name must be"), ("Acme", "gold", "plan must be one of")):
        result = subprocess.run(
            [venv_bin("taifa-admin"), "account", "create", "--name", name, "--plan", plan],
            env={**os.environ, "TAIFA_DATABASE_URL": api_db}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
        assert (result.returncode, error["code"]) == (2, "validation_error") and about in error["message"], error
