"""Upcasters: turn an old `schema_version` of an event's data into the current one.

A registry keyed by (event_type, from_version); each step raises the version by one, so a consumer
can read anything ever written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taifa_events.secrets import initial_secret_id

RawData = dict[str, Any]
Upcaster = Callable[[RawData], RawData]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
# Steps that only add fields the current data class's defaults give the same values (`by_defaults=True`): the fast
# decode (`taifa_events.fast_decode`) validates such older data with the current class in one pass instead.
# tests/unit/events/test_fast_decode.py checks each against its upcaster.
BY_DEFAULTS: set[tuple[str, int]] = set()


def upcaster(event_type: str, from_version: int, *, by_defaults: bool = False) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns `from_version` data into `from_version + 1` data."""

    def register(function: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = function
        if by_defaults:
            BY_DEFAULTS.add((event_type, from_version))
        return function

    return register


def upcast(event_type: str, version: int, target: int, data: RawData) -> RawData:
    """Apply the registered steps from `version` up to `target`; a missing step is an error."""
    if version > target:
        raise ValueError(f"{event_type} schema_version {version} is newer than this code ({target})")
    while version < target:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise ValueError(f"no upcaster for {event_type} schema_version {version}")
        data = step(dict(data))
        version += 1
    return data


@upcaster("CredentialCreated", 1, by_defaults=True)  # hash_scheme defaults to "sha256"
def _credential_created_v1_to_v2(data: RawData) -> RawData:
    # v1 predates the hash_scheme field; every v1 hash was SHA-256.
    data.setdefault("hash_scheme", "sha256")
    return data


@upcaster("CredentialCreated", 2, by_defaults=True)  # secret_id defaults to initial_secret_id
def _credential_created_v2_to_v3(data: RawData) -> RawData:
    # v2 predates secret ids: the first secret gets the stable id derived from the credential id.
    if "secret_id" not in data and "credential_id" in data:
        data["secret_id"] = str(initial_secret_id(data["credential_id"]))
    return data
