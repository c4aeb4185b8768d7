"""Issue 17: the request context reaches every appended event (actor, address, request id), without the use
cases knowing about HTTP; the request id rule; the actor of each kind of caller."""

from __future__ import annotations

import uuid

import pytest
from taifa_api.application import use_cases
from taifa_api.application.request_context import with_metadata
from taifa_api.entrypoints.http.auth import Principal
from taifa_api.entrypoints.http.request_context import request_id_of, request_metadata
from taifa_events import Actor, EventMetadata

from tests.unit.api.api_in_memory import InMemoryDatabase, open_account


async def test_events_appended_through_a_bound_factory_carry_the_metadata() -> None:
    database = InMemoryDatabase()
    account_id = await open_account(database)
    metadata = EventMetadata(actor=Actor(type="api_key", id="k1"), source_ip="198.51.100.7", request_id="r-1")
    outcome = await use_cases.register_domain(with_metadata(database, metadata), account_id, "mail.example", "r-1")
    assert outcome.events and all(e.metadata == metadata for e in outcome.events)


async def test_an_unbound_factory_appends_without_metadata() -> None:
    database = InMemoryDatabase()
    outcome = await use_cases.create_account(database, "acme", "pro", "t")
    assert all(e.metadata is None for e in outcome.events)


def test_actor_of_each_kind_of_caller() -> None:
    account = uuid.uuid4()
    key = uuid.uuid4()
    assert Principal(account, f"key:{key}", via_cookie=False).actor() == Actor(type="api_key", id=str(key))
    assert Principal(account, f"account:{account}", True, session_subject="user-7").actor() == Actor(
        type="session", id="user-7"
    )
    assert Principal(account, f"account:{account}", True).actor() == Actor(type="session", id=str(account))


def test_request_metadata_takes_the_client_address_and_request_id() -> None:
    scope = {"client": ("2001:db8::1", 5555), "state": {"request_id": "abc"}}
    principal = Principal(uuid.uuid4(), "key:k", via_cookie=False)
    metadata = request_metadata(scope, principal)
    assert metadata == EventMetadata(actor=Actor(type="api_key", id="k"), source_ip="2001:db8::1", request_id="abc")
    assert request_metadata({}, principal).source_ip is None


@pytest.mark.parametrize("given", ["", None, "a b", "x" * 201, "é", "line\nbreak"])
def test_an_implausible_request_id_is_replaced(given: str | None) -> None:
    replaced = request_id_of(given)
    assert replaced != given and uuid.UUID(replaced)


def test_a_plausible_request_id_is_kept() -> None:
    assert request_id_of("req-42_ab.c:d/e") == "req-42_ab.c:d/e"
