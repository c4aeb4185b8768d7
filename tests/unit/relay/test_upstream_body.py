"""The body the relay hands to aiosmtplib's protocol layer: CRLF-only check and dot-stuffing (RFC 5321 §4.5.2)."""

from __future__ import annotations

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from taifa_relay.adapters.upstream import crlf_only, dot_stuffed


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", True),
        (b"a\r\nb\r\n", True),
        (b"a\r\n\r\n", True),
        (b"a\nb\r\n", False),
        (b"a\rb\r\n", False),
        (b"a\r\n\rb\r\n", False),
        (b"a\r\nb", False),
        (b"a\n\r\n", False),
        (b"\n\r", False),
    ],
)
def test_crlf_only_accepts_only_crlf_pairs_and_a_final_crlf(message: bytes, expected: bool) -> None:
    assert crlf_only(message) is expected


@pytest.mark.parametrize(
    "message",
    [
        b"plain\r\nlines\r\n",
        b".leading dot\r\n",
        b"a\r\n.\r\nb\r\n",
        b"a\r\n..two\r\n.\r\n",
        b"..\r\n...\r\n",
        b"x.\r\n.y.\r\n",
    ],
)
def test_dot_stuffed_matches_aiosmtplibs_own_stuffing(message: bytes) -> None:
    # What aiosmtplib's SMTP.data() would send for the same CRLF-only message.
    assert dot_stuffed(message) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))


def test_a_stuffed_body_never_contains_the_end_of_data_marker() -> None:
    body = b"a\r\n.\r\n.\r\nb\r\n"
    assert b"\r\n.\r\n" not in dot_stuffed(body)
