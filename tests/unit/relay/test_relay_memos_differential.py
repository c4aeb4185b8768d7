"""The relay's remembered pure functions agree with what they remember: the upstream's quoting of MAIL/RCPT addresses
(aiosmtplib's quote_address) and the Received header's date (email.utils.format_datetime), on any input and on a
second call (from the memo)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from aiosmtplib.email import quote_address
from hypothesis import given
from hypothesis import strategies as st
from taifa_relay.adapters import upstream_pipelining
from taifa_relay.adapters.upstream_pipelining import quoted
from taifa_relay.domain import policy

_ADDRESSES = [
    "user@example.com",
    "First Last <user@example.com>",
    "<user@example.com>",
    '"quoted local"@example.com',
    "  spaced@example.com  ",
    "",
    "no-at-sign",
    "user@[127.0.0.1]",
    "bad\r\nRCPT TO:<x@y>",
    "ünïcode@example.com",
]


def _quote_or_error(address: str) -> bytes | type[Exception]:
    try:
        return quote_address(address).encode("ascii")
    except (ValueError, UnicodeError) as exc:
        return type(exc)


def _quoted_or_error(address: str) -> bytes | type[Exception]:
    try:
        return quoted(address)
    except (ValueError, UnicodeError) as exc:
        return type(exc)


@pytest.mark.parametrize("address", _ADDRESSES)
def test_quoted_is_aiosmtplibs_quote_address_first_and_from_the_memo(address: str) -> None:
    expected = _quote_or_error(address)
    assert _quoted_or_error(address) == expected
    assert _quoted_or_error(address) == expected


@given(st.text(max_size=80))
def test_quoted_agrees_with_quote_address_on_any_text(address: str) -> None:
    assert _quoted_or_error(address) == _quote_or_error(address)
    assert _quoted_or_error(address) == _quote_or_error(address)


def test_the_quoting_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_pipelining, "_MAX_QUOTED", 3)
    upstream_pipelining._QUOTED.clear()
    for n in range(10):
        assert quoted(f"u{n}@example.com") == f"<u{n}@example.com>".encode()
        assert len(upstream_pipelining._QUOTED) <= 3


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30))]),
)
def test_the_received_date_is_format_datetime_of_now(now: datetime, zone: timezone) -> None:
    now = now.replace(tzinfo=zone)
    header = policy.received_header(
        helo="client.test", client_ip="192.0.2.1", hostname="relay.test", tls_version="TLSv1.3", now=now, queue_id="q"
    )
    assert header.endswith(f"\t{format_datetime(now)}\r\n".encode())
    again = policy.received_header(
        helo="client.test", client_ip="192.0.2.1", hostname="relay.test", tls_version=None, now=now, queue_id="q"
    )
    assert again.endswith(f"\t{format_datetime(now)}\r\n".encode())
