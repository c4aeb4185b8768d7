"""Fixtures of the credential API's unit tests: in-memory fakes of its own ports (api_in_memory.py)."""

from __future__ import annotations

import pytest
from api_in_memory import Clock, InMemoryDatabase, Zone


@pytest.fixture
def database() -> InMemoryDatabase:
    return InMemoryDatabase()


@pytest.fixture
def zone() -> Zone:
    return Zone()


@pytest.fixture
def clock() -> Clock:
    return Clock()
