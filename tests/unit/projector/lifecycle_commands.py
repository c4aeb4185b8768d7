"""Sequences of credential lifecycle commands as the API would turn them into events (its invariants applied:
one credential per domain, no rotation while a previous secret is in its grace period, only a previous secret
revoked, suspend/resume repeats make no event, nothing after a deactivation). Shared by the unit and the
integration property tests of the projector (issue 15)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from taifa_events import Envelope

from tests.unit.projector.projector_events import Domain, restricted, resumed, rotated, secret_revoked, suspended

COMMANDS = ("create", "rotate", "revoke", "suspend", "resume", "restrict", "deactivate")
GRACES = (0, 2, 3600)
CIDR_CHOICES = ([], ["203.0.113.0/24"], ["198.51.100.0/24", "2001:db8::/48"])

# (command, domain index, grace choice, restriction choice)
command = st.tuples(st.sampled_from(COMMANDS), st.integers(0, 1), st.sampled_from(GRACES), st.integers(0, 2))
command_lists = st.lists(command, min_size=1, max_size=25)


@dataclass
class _Credential:
    created: Envelope[Any]
    newest: uuid.UUID
    previous: uuid.UUID | None = None
    previous_ends: int = 0  # position (= second of `at`) at which the previous secret's grace ends
    suspended: bool = False


@dataclass
class _Model:
    domains: list[Domain] = field(default_factory=lambda: [Domain(), Domain()])
    credentials: dict[int, _Credential] = field(default_factory=dict)
    events: list[Envelope[Any]] = field(default_factory=list)

    def emit(self, name: str, index: int, grace: int, choice: int) -> None:
        d, position = self.domains[index], len(self.events) + 1
        current = self.credentials.get(index)
        if name == "create":
            if current is None:
                created = d.created(position)
                self.credentials[index] = _Credential(created, created.data.secret_id)
                self.events.append(created)
            return
        if current is None:
            return
        in_grace = current.previous is not None and position < current.previous_ends
        if name == "rotate" and not in_grace:
            event = rotated(d, current.created, position, current.newest, grace=grace)
            current.previous, current.previous_ends = current.newest, position + grace
            current.newest = event.data.secret_id
        elif name == "revoke" and in_grace and current.previous is not None:
            event = secret_revoked(d, current.created, position, current.previous)
            current.previous = None
        elif name == "suspend" and not current.suspended:
            event, current.suspended = suspended(d, current.created, position), True
        elif name == "resume" and current.suspended:
            event, current.suspended = resumed(d, current.created, position), False
        elif name == "restrict":
            event = restricted(
                d, current.created, position, list(CIDR_CHOICES[choice]), expires_in=[None, 60, 86400][choice],
                per_minute=[None, 5, 60][choice], per_day=[None, 100, None][choice],
            )  # fmt: skip
        elif name == "deactivate":
            event = d.deactivated(current.created, position)
            del self.credentials[index]
        else:
            return
        self.events.append(event)


def events_of(commands: list[tuple[str, int, int, int]]) -> list[Envelope[Any]]:
    """The events (positions 1..n, in order) the API would have written for `commands`."""
    model = _Model()
    for name, index, grace, choice in commands:
        model.emit(name, index, grace, choice)
    return model.events
