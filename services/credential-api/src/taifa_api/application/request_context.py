"""The request context of a command (issue 17): who asked (actor), from which address, in which request.

The entrypoint (HTTP or `taifa-admin`) builds the `EventMetadata` once per request and hands the use cases a
unit-of-work factory bound to it; every event the command appends then records it in its envelope. The use
cases stay unaware of HTTP, and no command can forget to pass it.
"""

from __future__ import annotations

from taifa_events import Actor, EventMetadata

from taifa_api.application.ports import AbstractUnitOfWork, UnitOfWorkFactory

__all__ = ["Actor", "EventMetadata", "with_metadata"]


def with_metadata(factory: UnitOfWorkFactory, metadata: EventMetadata) -> UnitOfWorkFactory:
    """`factory`, whose units append their events with `metadata`."""

    def open_unit() -> AbstractUnitOfWork:
        work = factory()
        work.metadata = metadata
        return work

    return open_unit
