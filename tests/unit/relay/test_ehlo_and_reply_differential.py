"""The relay's EHLO (entrypoints.tls_upgrade: one push for the whole reply) against aiosmtpd 1.4.6's own smtp_EHLO with
the relay's former fix of the MAIL line limit: the same bytes on the wire, the same session and limits, before and
after STARTTLS, on the implicit-TLS port, EHLO repeated, and an EHLO without a name. And every reply's write
(`write_reply`) against aiosmtpd's SMTP.push: the same bytes, drained whenever the drain could act."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from taifa_relay.entrypoints.handler import RelayHandler
from taifa_relay.entrypoints.session_state import RelaySession
from taifa_relay.entrypoints.smtp_protocol import RelaySMTP

from tests.unit.relay.relay_fakes import protocol_limits


class _Transport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.drains = 0
        self.transport = _Transport()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drain(self) -> None:
        self.drains += 1


LIMITS = protocol_limits()


def _protocol(implicit_tls: bool, tls_on: bool) -> tuple[RelaySMTP, _Writer]:
    handler = RelayHandler(submission=object())  # type: ignore[arg-type]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    protocol = RelaySMTP(handler, sessions=object(), limits=LIMITS, tls_context=context, implicit_tls=implicit_tls)  # type: ignore[arg-type]
    writer = _Writer()
    protocol._writer = writer  # type: ignore[assignment]
    protocol._reader = asyncio.StreamReader()  # connection_made sets both
    protocol.session = RelaySession(asyncio.get_running_loop())
    protocol._set_rset_state()  # type: ignore[no-untyped-call]
    if tls_on:
        protocol._tls_protocol = object()  # type: ignore[assignment]
    return protocol, writer


async def _aiosmtpd_ehlo(protocol: RelaySMTP, hostname: str) -> None:
    """The former path: aiosmtpd's smtp_EHLO, one push per line through RelaySMTP.push, then the limit fix."""
    await SMTP.smtp_EHLO(protocol, hostname)
    protocol.command_size_limits["MAIL"] = protocol.command_size_limit + 26


def _state(protocol: RelaySMTP, writer: _Writer) -> Any:
    session = protocol.relay_session
    envelope = protocol.envelope
    assert envelope is not None
    return (
        b"".join(writer.written),
        session.extended_smtp,
        session.host_name,
        dict(protocol.command_size_limits),
        (envelope.mail_from, envelope.rcpt_tos),
        protocol._errors,
    )


@pytest.mark.parametrize(("implicit_tls", "tls_on"), [(False, False), (False, True), (True, True)])
@pytest.mark.parametrize("names", [["client.test"], ["client.test", "again.test"], [""], ["", "client.test"]])
async def test_ehlo_sends_and_sets_what_aiosmtpds_ehlo_did(implicit_tls: bool, tls_on: bool, names: list[str]) -> None:
    ours, our_writer = _protocol(implicit_tls, tls_on)
    theirs, their_writer = _protocol(implicit_tls, tls_on)
    for name in names:
        for protocol in (ours, theirs):
            assert protocol.envelope is not None
            protocol.envelope.mail_from = "someone@example.com"  # EHLO resets the transaction
        await ours.smtp_EHLO(name)
        await _aiosmtpd_ehlo(theirs, name)
        assert _state(ours, our_writer) == _state(theirs, their_writer)
    assert len(our_writer.written) == len(names), "one write per EHLO"


async def test_help_still_knows_ehlos_syntax() -> None:
    protocol, writer = _protocol(False, True)
    protocol.relay_session.authenticated = True
    await protocol.smtp_HELP("EHLO")
    assert writer.written == [b"250 Syntax: EHLO hostname\r\n"]


@pytest.mark.parametrize("state", ["open", "paused", "closing", "lost", "reader failed"])
async def test_a_reply_is_written_as_aiosmtpds_push_writes_it_and_drained_when_drain_could_act(state: str) -> None:
    ours, our_writer = _protocol(False, True)
    theirs, their_writer = _protocol(False, True)
    for protocol, writer in ((ours, our_writer), (theirs, their_writer)):
        if state == "paused":
            protocol._paused = True
        elif state == "closing":
            writer.transport.closing = True
        elif state == "lost":
            protocol._connection_lost = True
        elif state == "reader failed":
            protocol._reader.set_exception(ConnectionResetError())
    await ours.write_reply("250 2.1.0 OK")
    await SMTP.push(theirs, "250 2.1.0 OK")
    assert our_writer.written == their_writer.written == [b"250 2.1.0 OK\r\n"]
    assert their_writer.drains == 1
    assert our_writer.drains == (0 if state == "open" else 1)
    with pytest.raises(UnicodeEncodeError):
        await ours.write_reply("250 caf\u00e9")
    with pytest.raises(UnicodeEncodeError):
        await SMTP.push(theirs, "250 caf\u00e9")
