"""Folding a sequence of events into read-model rows, auth entries and parked events.

`ReadSideFold` holds the part of the read side a batch touches (live: loaded from PostgreSQL for the
batch's ids; rebuild: everything, in memory) and records what changed, so the caller writes only
that. The same fold serves the live consumer and both rebuilds, which is why they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from taifa_events import AccountCreated, Envelope, EventData

from taifa_projector.domain.credentials import DEFAULT_PLAN
from taifa_projector.domain.model import (
    CREDENTIAL_EVENTS,
    DOMAIN_EVENTS,
    AuthEntry,
    CredentialRow,
    DomainOwner,
    DomainRow,
    apply_credential_event,
    apply_domain_event,
    auth_entry_of,
    change_of,
    creates_stream,
    domain_owner_for,
    is_credential_event,
    newer_entry,
    revocation_of,
    tombstone_of_event,
)

Event = Envelope[EventData]
RowT = TypeVar("RowT", CredentialRow, DomainRow)


@dataclass
class ReadSideFold:
    """Rows by id plus the sets of ids whose rows changed during the fold."""

    credentials: dict[UUID, CredentialRow] = field(default_factory=dict)
    domains: dict[UUID, DomainRow] = field(default_factory=dict)
    auth: dict[str, AuthEntry] = field(default_factory=dict)
    # stream id -> {position: event} waiting for the event that creates the stream's row
    parked: dict[UUID, dict[int, Event]] = field(default_factory=dict)
    # account id -> plan (AccountCreated; plans never change): the `plan` of the account's cache entries
    plans: dict[UUID, str] = field(default_factory=dict)

    changed_plans: set[UUID] = field(default_factory=set)
    changed_credentials: set[UUID] = field(default_factory=set)
    changed_domains: set[UUID] = field(default_factory=set)
    changed_auth: set[str] = field(default_factory=set)
    # parked streams whose stored parked events were resolved (delete them) / newly parked events (store them)
    unparked_streams: set[UUID] = field(default_factory=set)
    newly_parked: dict[tuple[UUID, int], Event] = field(default_factory=dict)
    # Rebuilds: a credential's cache entry is built once, from its final row (`settle_auth`), instead of after
    # every event that changes the row; the entries are the same (see `settle_auth`).
    deferred_auth: bool = False

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        """Fold one event in (position-conditional: a duplicate or older event changes nothing)."""
        # Runs for every event of every batch and rebuild: the event's class and stream are looked up once.
        data = event.data
        kind = type(data)
        if kind in CREDENTIAL_EVENTS:
            stream = data.stream_id()
            before = self.credentials.get(stream)
            after = self._apply_row(
                event, stream, before, self.credentials, self.changed_credentials, apply_credential_event
            )
            if after is None:
                # Parked until its creation arrives; a deactivation still revokes at once (fail closed).
                entry = tombstone_of_event(event)
                if entry is not None:
                    self._apply_auth(entry)
            elif after is not before and not self.deferred_auth:
                # The entry follows the credential's whole state (secrets, status, restrictions) and its plan.
                self._apply_auth(auth_entry_of(after, self.plans.get(after.account_id, DEFAULT_PLAN)))
        elif kind in DOMAIN_EVENTS:
            stream = data.stream_id()
            self._apply_row(
                event, stream, self.domains.get(stream), self.domains, self.changed_domains, apply_domain_event
            )
        elif type(data) is AccountCreated:
            self._apply_plan(data.account_id, data.plan)

    def _apply_plan(self, account_id: UUID, plan: str) -> None:
        """Record the account's plan and give it to the account's entries this fold holds (an AccountCreated
        consumed after the account's credentials: the live store loads those entries for it)."""
        if account_id in self.plans:
            return  # plans never change: a duplicate or replay changes nothing
        self.plans[account_id] = plan
        self.changed_plans.add(account_id)
        for entry in [e for e in self.auth.values() if e.account_id == account_id and e.plan != plan]:
            self._apply_auth(entry._replace(plan=plan))

    def _apply_row(
        self,
        event: Event,
        stream: UUID,
        before: RowT | None,
        rows: dict[UUID, RowT],
        changed: set[UUID],
        rule: Callable[[RowT | None, Event], RowT | None],
    ) -> RowT | None:
        """Apply `event` to its stream's row `before` (and the events parked for it); the row after, or None if
        parked."""
        after = rule(before, event)
        if after is None:
            self._park(stream, event)
            return None
        # Unchanged (an older or duplicate event, a final state): the rules return the row itself, no comparison.
        if after is not before and after != before:
            rows[stream] = after
            changed.add(stream)
        if self.parked and stream in self.parked and creates_stream(event):
            waiting = self.parked.pop(stream)
            self.unparked_streams.add(stream)
            for position in sorted(waiting):
                self.newly_parked.pop((stream, position), None)
                current = rows[stream]
                resolved = rule(current, waiting[position])
                if resolved is not None and resolved != current:
                    rows[stream] = resolved
        return rows[stream]

    def _park(self, stream: UUID, event: Event) -> None:
        waiting = self.parked.setdefault(stream, {})
        if event.position not in waiting:
            waiting[event.position] = event
            self.newly_parked[(stream, event.position)] = event

    def _apply_auth(self, entry: AuthEntry) -> None:
        current = self.auth.get(entry.username)
        winner = newer_entry(current, entry)
        if winner is not current:
            self.auth[entry.username] = winner
            self.changed_auth.add(entry.username)

    def settle_auth(self) -> None:
        """With `deferred_auth`: give every credential the entry of its final row, in position order, as the
        event-by-event fold would have left them. Each event that changed a row applied that row's entry, at the
        row's (rising) position, so the newest of a credential's entries is its final row's; its plan is the
        account's as known now, which is what `_apply_plan` gave the entry when the account came later. Tombstones
        of deactivations parked without their creation were applied as they came (they stay in `auth`). Two
        credentials' final rows never share a position, so the order in which they are applied does not matter."""
        plans = self.plans
        for row in self.credentials.values():
            self._apply_auth(auth_entry_of(row, plans.get(row.account_id, DEFAULT_PLAN)))

    def changed_owners(self) -> list[DomainOwner]:
        """The owner-key changes of the domain rows this fold changed, in position order."""
        return owners_of(self.domains[i] for i in self.changed_domains)


def owners_of(rows: Iterable[DomainRow]) -> list[DomainOwner]:
    """The owner-key changes `rows` stand for, in position order (the live batch and the cache rebuild from
    the read model write them through the same position-guarded script, so both end in the same keys)."""
    owners = [o for o in map(domain_owner_for, rows) if o is not None]
    owners.sort(key=lambda o: o.position)
    return owners


def revocations(events: Iterable[Event]) -> list[tuple[str, UUID]]:
    """(username, credential id) of every deactivation among `events` (a batch's newly applied events), in
    position order, each once. Taken from the events, not from the batch's final cache entries: a
    deactivation followed by a new credential for the same username in one batch must still be announced."""
    return _each_once(events, revocation_of)


def changes(events: Iterable[Event]) -> list[tuple[str, UUID]]:
    """(username, credential id) of every credential that a rotation, secret revocation, suspension, resume or
    restrictions change among `events` (a batch's newly applied events: a duplicate announces nothing) touched,
    each once, in position order: the batch's "credential changed" notices."""
    return _each_once(events, change_of)


def _each_once(events: Iterable[Event], rule: Callable[[Event], tuple[str, UUID] | None]) -> list[tuple[str, UUID]]:
    found: dict[tuple[str, UUID], int] = {}
    for event in events:
        named = rule(event)
        if named is not None and named not in found:
            found[named] = event.position
    return sorted(found, key=found.__getitem__)


def latest_auth_entries(events: Iterable[Event]) -> dict[str, AuthEntry]:
    """The newest auth entry per username that `events` fold into (from nothing)."""
    fold = ReadSideFold()
    fold.apply_all(events)
    return fold.auth


def cache_writes(fold: ReadSideFold, redelivered: Iterable[Event]) -> dict[str, AuthEntry]:
    """What a live batch writes to the auth cache: the entries its fold changed, plus the current entries of the
    usernames of events applied before (a redelivery: a crash may have come between the PostgreSQL commit and
    the Redis write). The store loads those entries into the fold (`fold.auth`), as committed."""
    entries: dict[str, AuthEntry] = {}
    for event in redelivered:
        if is_credential_event(event):
            username = str(getattr(event.data, "username", "")).lower()
            current = fold.auth.get(username)
            if current is not None:
                entries[username] = current
    for username in fold.changed_auth:
        entries[username] = newer_entry(entries.get(username), fold.auth[username])
    return entries
