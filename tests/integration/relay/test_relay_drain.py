"""The drain on SIGTERM (deploy/README.md, a relay pod leaving): idle sessions are closed at once, a session in a
transaction finishes its message and then gets 421 before any new one, and a message already on its way upstream
when the grace period ends is let finish (cut off, its client would send again what the upstream may hold)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from concurrent.futures import Future
from typing import Any

import pytest
from taifa_localstack import wait_until

from tests.integration.relay.fake_upstream import LoopThread
from tests.integration.relay.support import Certs, Client, Credentials, Raw, message, socket_queues


class SlowUpstream:
    """A plain SMTP upstream that keeps each message at the end of its data and answers `delay` seconds later."""

    def __init__(self, delay: float, mail_delay: float = 0.0) -> None:
        self.delay, self.mail_delay = delay, mail_delay
        self.messages: list[bytes] = []
        self.mails = 0
        self.server = LoopThread(self._session)
        self.port = self.server.port

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-slow.test\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    self.mails += 1
                    await asyncio.sleep(self.mail_delay)
                    writer.write(b"250 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    await writer.drain()
                    self.messages.append(await reader.readuntil(b"\r\n.\r\n"))  # a real MTA commits here
                    await asyncio.sleep(self.delay)
                    writer.write(b"250 2.0.0 queued\r\n")
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        writer.close()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def slow_upstream() -> Any:
    upstream = SlowUpstream(delay=2.0)
    yield upstream
    upstream.stop()


def _message_in_background(
    relay: Any, certs: Certs, credentials: Credentials
) -> tuple[smtplib.SMTP, Future[tuple[int, bytes]]]:
    """A new credential's session with a message under way: MAIL and RCPT answered, its DATA sent from another thread
    (the test drains meanwhile); the session, and DATA's reply when it comes."""
    cred = credentials.create()
    sender = f"app@{cred.domain}"
    smtp = Client(relay, certs).login(cred)
    smtp.mail(sender)
    smtp.rcpt("a@dest.example")
    answered: Future[tuple[int, bytes]] = Future()
    threading.Thread(target=lambda: answered.set_result(smtp.data(message(sender))), daemon=True).start()
    return smtp, answered


def _refused(smtp: smtplib.SMTP) -> bool:
    try:
        return smtp.noop()[0] == 421
    except smtplib.SMTPServerDisconnected:
        return True


def test_an_idle_session_is_closed_at_once_and_no_new_transaction_starts(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    relay = make_relay(relay_drain_grace_seconds=60)
    cred = credentials.create()
    idle = Client(relay, certs).login(cred)  # a pooled connection between two messages
    assert relay.relay is not None
    relay.call(relay.relay.drain(), timeout=30)  # well before the grace period: nothing held it
    assert _refused(idle)


def test_a_message_on_its_way_upstream_when_the_grace_period_ends_is_let_finish(
    make_relay: Any, certs: Certs, credentials: Credentials, slow_upstream: SlowUpstream
) -> None:
    relay = make_relay(relay_upstream_port=slow_upstream.port, relay_upstream_tls="none", relay_drain_grace_seconds=0.2)
    smtp, answered = _message_in_background(relay, certs, credentials)
    wait_until(lambda: len(slow_upstream.messages) == 1, 10, "the upstream holds the message")
    assert relay.relay is not None
    relay.call(relay.relay.drain(), timeout=30)  # the grace period ends while the upstream has not answered yet
    assert answered.result(10)[0] == 250  # not a 421 the client would retry: the upstream has it
    assert _refused(smtp)  # and then no new transaction
    assert len(slow_upstream.messages) == 1


def test_a_delivery_of_several_slow_steps_under_way_at_the_grace_end_is_let_finish(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    # Each step is within the step timeout (2 s) but the delivery takes two of them (MAIL, then the end of data):
    # the drain waits for a whole delivery's bound (four steps), not one step.
    upstream = SlowUpstream(delay=1.5, mail_delay=1.5)
    try:
        relay = make_relay(
            relay_upstream_port=upstream.port,
            relay_upstream_tls="none",
            relay_upstream_timeout_seconds=2.0,
            relay_drain_grace_seconds=0.2,
        )
        _, answered = _message_in_background(relay, certs, credentials)
        wait_until(lambda: upstream.mails == 1, 10, "the relay's delivery waits for the upstream's MAIL reply")
        assert relay.relay is not None
        relay.call(relay.relay.drain(), timeout=30)
        assert answered.result(10)[0] == 250
        assert len(upstream.messages) == 1
    finally:
        upstream.stop()


def test_a_connection_still_reading_its_proxy_header_at_the_drain_gets_421_and_no_session(make_relay: Any) -> None:
    # Admitted only once its header is read, such a connection was not among the sessions the drain closes: it was
    # then served by a relay that had stopped, and cut when the process ended under it.
    relay = make_relay(relay_proxy_protocol=True, relay_proxy_trusted_cidrs="127.0.0.1/32")
    raw = Raw(relay.submission_port)
    try:
        wait_until(lambda: not any(rx for _, rx in socket_queues(relay.submission_port)), 10, "the relay accepted it")
        assert relay.relay is not None
        relay.call(relay.relay.drain(), timeout=30)
        raw.send(b"PROXY TCP4 203.0.113.9 192.0.2.25 40000 587\r\n")
        assert raw.reply() == "421 4.3.2 Service shutting down, try again later"
        assert raw.closed()
    finally:
        raw.close()
