"""The rules of webhook delivery (issue 17), pure: the `webhook-id` of a delivery, which endpoints take which event,
the retry schedule with its jitter, what counts as delivered, and what of a response may be kept.

The schedule follows Svix's (the Standard Webhooks reference implementation): an attempt at once, then after
5 s, 5 min, 30 min, 2 h, 5 h and then every 10 h, about three days in all; after the last failure the delivery is
`failed` and its endpoint disabled.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

# Pauses before each retry; len(RETRY_SCHEDULE) + 1 attempts in all (13), the last about 77.6 h after the first.
RETRY_SCHEDULE: Final[tuple[timedelta, ...]] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    *(timedelta(hours=10),) * 7,
)
MAX_ATTEMPTS: Final = len(RETRY_SCHEDULE) + 1
JITTER: Final = 0.2  # each pause is stretched or shrunk by up to a fifth, so failed bursts do not retry in step

ALL_EVENTS: Final = "*"
EXCERPT_CHARS: Final = 200  # response bodies are kept no longer than this, for the owner's debugging
ERROR_CHARS: Final = 200

DISABLED_REASON: Final = "deliveries failed for about 3 days"

# The namespace of message ids: a delivery's id is a function of (endpoint, event), so it is the same on every
# retry and on every replay of the event (which the unique key makes one delivery anyway).
_MESSAGE_ID_NAMESPACE: Final = uuid.UUID("5a1f3c0e-9d7b-4a52-8f6e-7b1d0c2e4f17")


def message_id(webhook_id: uuid.UUID, event_id: uuid.UUID) -> str:
    """The Standard Webhooks `webhook-id` of the delivery of one event to one endpoint: `msg_` + 32 hex digits."""
    return "msg_" + uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"{webhook_id}:{event_id}").hex


def delivery_id(webhook_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    """The delivery row's id, derived like the message id (a redelivered record computes the same row)."""
    return uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"delivery:{webhook_id}:{event_id}")


def subscribed(events: list[str] | tuple[str, ...], event_type: str) -> bool:
    """An endpoint takes an event when it names its type, or `*`."""
    return ALL_EVENTS in events or event_type in events


def retry_delay(attempts_made: int, jitter_draw: float, *, scale: float = 1.0) -> timedelta | None:
    """The pause before the next attempt after `attempts_made` failed ones; None once the schedule is spent.

    `jitter_draw` is a number in [0, 1) from the caller's random source (this module draws none): 0.5 is the
    scheduled pause, 0 and 1 the ends of the +-JITTER band. `scale` shrinks the whole schedule (tests, benches).
    """
    if attempts_made < 1:
        raise ValueError("retry_delay is asked after a failed attempt")
    if attempts_made > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[attempts_made - 1].total_seconds() * scale
    factor = 1.0 + JITTER * (2.0 * min(max(jitter_draw, 0.0), 1.0) - 1.0)
    return timedelta(seconds=base * factor)


def schedule_span(*, scale: float = 1.0) -> timedelta:
    """From the first attempt to the last, without jitter (about 3 days at scale 1)."""
    return sum(RETRY_SCHEDULE, timedelta()) * scale


def delivered(status_code: int | None) -> bool:
    """Only a 2xx answer is a delivery: a redirect (never followed), 4xx, 5xx and no answer are failures."""
    return status_code is not None and 200 <= status_code < 300


def excerpt(body: bytes) -> str | None:
    """What of a response body is kept: its first EXCERPT_CHARS characters as text, None when empty."""
    text = body.decode("utf-8", "replace")[:EXCERPT_CHARS].replace("\x00", "\ufffd")  # PostgreSQL text has no NUL
    return text or None


def short_error(error: str) -> str:
    """An attempt's error as stored and shown to the owner: one line, at most ERROR_CHARS characters."""
    return " ".join(error.replace("\x00", "\ufffd").split())[:ERROR_CHARS]


@dataclass(frozen=True, slots=True)
class ClaimCandidate:
    """A due delivery a claim may take (the oldest due one of its endpoint)."""

    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    account_id: uuid.UUID


def claim_lanes(concurrency: int) -> tuple[int, int]:
    """(slots that endpoints not proven may hold, of which one account may hold): an endpoint is proven once an
    attempt to it succeeded (and until one fails). Endpoints that hang, or never answered yet, hold at most half
    the slots, and one account at most a fifth of those (two at least: one slow endpoint of an account must not
    hold back its other new one); the other half is always there for endpoints that answer."""
    unproven = max(1, concurrency // 2)
    return unproven, min(unproven, max(2, unproven // 5))


def choose_claims(
    candidates: Sequence[ClaimCandidate],
    free: int,
    *,
    proven: Container[uuid.UUID],
    unproven_left: int,
    held: Mapping[uuid.UUID, int],
    per_account: int,
) -> tuple[list[ClaimCandidate], list[ClaimCandidate]]:
    """Which of `candidates` (oldest due first) to take into `free` slots: every proven endpoint's, and others'
    while the unproven lane has room (`unproven_left`) and their account holds fewer than `per_account` of its
    slots (`held`: what each account holds there now). Endpoints that hang cannot take the slots of those that
    answer, and one account's cannot take all of the rest. Returns (taken, held back by the lane or the account
    cap): the caller leaves the held-back endpoints out of its next claims until an unproven slot frees, so that
    however many wait, the claim reaches the endpoints behind them."""
    chosen: list[ClaimCandidate] = []
    held_back: list[ClaimCandidate] = []
    counts = dict(held)
    for candidate in candidates:
        if len(chosen) >= free:
            break
        if candidate.webhook_id not in proven:
            if unproven_left <= 0 or counts.get(candidate.account_id, 0) >= per_account:
                held_back.append(candidate)
                continue
            unproven_left -= 1
            counts[candidate.account_id] = counts.get(candidate.account_id, 0) + 1
        chosen.append(candidate)
    return chosen, held_back
