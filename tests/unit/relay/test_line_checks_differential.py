"""The message reader's line checks (issue 18 fast path) refuse exactly what the earlier per-line versions did."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from taifa_relay.domain import policy, replies


def _old_has_bare_newline(data: bytes) -> bool:
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def _old_longest_line(data: bytes) -> int:
    return max(map(len, data.split(b"\r\n"))) + 2


def _old_refusal(data: bytes, limit: int) -> str | None:
    if _old_has_bare_newline(data):
        return replies.BARE_NEWLINE
    if len(data) > limit and _old_longest_line(data) > limit:
        return replies.LINE_TOO_LONG
    return None


def _new_refusal(data: bytes | bytearray, limit: int) -> str | None:
    if policy.has_bare_newline(data):
        return replies.BARE_NEWLINE
    if len(data) > limit and policy.has_long_line(data, limit):
        return replies.LINE_TOO_LONG
    return None


# Short alphabets so that CR, LF and line lengths around the limit come up often.
_pieces = st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"x", b"xxxx", b".", b"\r\r\n", b"\r\n\n"]), max_size=40)
_lines = st.lists(st.integers(min_value=0, max_value=24), max_size=12)


@given(_pieces, st.integers(min_value=0, max_value=26))
def test_any_bytes_get_the_same_refusal(pieces: list[bytes], limit: int) -> None:
    data = b"".join(pieces)
    assert policy.has_bare_newline(data) is _old_has_bare_newline(data)
    assert _new_refusal(data, limit) == _old_refusal(data, limit)
    assert _new_refusal(bytearray(data), limit) == _old_refusal(data, limit)


@given(_lines, st.integers(min_value=0, max_value=26), st.booleans())
def test_crlf_messages_get_the_same_line_length_refusal(lengths: list[int], limit: int, tail: bool) -> None:
    # Shaped like the reader's buffer: a leading CRLF, CRLF lines, maybe an unterminated last piece.
    data = b"\r\n" + b"".join(b"y" * n + b"\r\n" for n in lengths) + (b"zz" if tail else b"")
    assert policy.has_long_line(data, limit) is (_old_longest_line(data) > limit)
    assert _new_refusal(data, limit) == _old_refusal(data, limit)


def test_limits_around_a_real_line() -> None:
    line = b"a" * 998 + b"\r\n"  # 1,000 bytes with its CRLF
    data = b"\r\n" + line * 20
    assert not policy.has_long_line(data, 1000) and policy.has_long_line(data, 999)
    longer = b"\r\n" + line * 3 + b"b" * 999 + b"\r\n" + line
    assert policy.has_long_line(longer, 1000) and not policy.has_long_line(longer, 1001)
