"""The relay's message path against upstreams that misbehave, and addresses built to be read two ways (case B2 and
the upstream rows of docs/testing.md): what the relay checks is what the upstream is sent; a command line with a
control character is refused before anything reads it; an address aiosmtpd's reader cannot parse is a 553, not an
internal error; a pipelined RSET that times out never pools a connection out of step; a 251 accepts a recipient;
after an upstream restart (every pooled connection closed, with or without a 421) the next messages are relayed;
a disconnect after the body is never a 250; an upstream certificate for another host is refused."""

from __future__ import annotations

import asyncio
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import trustme
from taifa_localstack import free_port

from tests.integration.relay.fake_upstream import LoopThread, server_context
from tests.integration.relay.raw_client import Raw, login_raw
from tests.integration.relay.support import Certs, Client, Credentials, message


# --- what is checked is what is sent -------------------------------------------------------------------------
@pytest.mark.parametrize("pipelining", [False, True])
def test_b2_a_control_character_in_mail_or_rcpt_is_refused_and_nothing_reaches_the_upstream(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials, pipelining: bool
) -> None:
    # `"ceo@bank.example\r"@own.example` passed aiosmtpd's reading and the sender check (its domain is the
    # credential's), and the upstream client's parser stops at the CR: the upstream was sent MAIL FROM:<ceo@bank...>.
    upstream = scripted(pipelining=pipelining, tls=server_context(certs.ca))
    relay = make_relay(relay_upstream_port=upstream.port)
    cred = credentials.create()
    raw = Raw(relay.submission_port, certs=certs)
    login_raw(raw, cred)
    for line in (
        f'MAIL FROM:<"ceo@bank.example\r"@{cred.domain}>',
        f'MAIL FROM:<"ceo@bank.example\t"@{cred.domain}>',
        f"MAIL FROM:<app@{cred.domain}>\x00",
    ):
        assert raw.command(line) == "500 5.5.2 Error: bad syntax"
    assert raw.command(f"MAIL FROM:<app@{cred.domain}>").startswith("250")
    assert raw.command('RCPT TO:<"victim@x.example\r"@dest.example>') == "500 5.5.2 Error: bad syntax"
    assert raw.command("RCPT TO:<a@dest.example>").startswith("250")
    assert raw.command("DATA").startswith("354")
    assert raw.command(message(f"app@{cred.domain}") + b".\r\n").startswith("250")
    raw.close()
    assert [c for c in upstream.commands if c.startswith(("MAIL", "RCPT"))] == [
        f"MAIL FROM:<app@{cred.domain}>",
        "RCPT TO:<a@dest.example>",
    ]


@pytest.mark.parametrize("verb", ["MAIL FROM:", "RCPT TO:"])
@pytest.mark.parametrize("address", ["\\@[x@{own}", "<@evil.example{own},( evil.example>"])
def test_an_address_the_parser_cannot_read_is_a_553_not_an_internal_error(
    client: Client, credentials: Credentials, verb: str, address: str
) -> None:
    cred = credentials.create()
    raw = Raw(client.relay.submission_port, certs=client.certs)
    login_raw(raw, cred)
    if verb == "RCPT TO:":
        assert raw.command(f"MAIL FROM:<app@{cred.domain}>").startswith("250")
    reply = raw.command(verb + address.format(own=cred.domain))
    raw.close()
    assert reply.startswith("553 5.1.3"), reply


# --- a pipelined RSET that times out leaves no pooled connection one reply behind ------------------------------
class SlowRsetUpstream:
    """PIPELINING upstream, no TLS: refuses recipients at `bad.example`, answers the first RSET after `rset_delay`
    seconds; records every transaction it delivered (envelope sender and body)."""

    def __init__(
        self, rset_delay: float, *, pipelining: bool = True, bad_reply: bytes = b"550 5.1.1 no such user"
    ) -> None:
        self.rset_delay = rset_delay
        self.pipelining = pipelining
        self.bad_reply = bad_reply
        self.delivered: list[tuple[str, list[str], bytes]] = []
        self.commands: list[str] = []
        self.rsets = 0
        self.late_reset_sent = threading.Event()
        self.server = LoopThread(self._session)
        self.port = self.server.port

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 up ESMTP\r\n")
        sender, rcpts, good = "", [], 0
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").rstrip("\r\n")
                self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    writer.write(
                        b"250-up\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 8BITMIME\r\n"
                    )
                elif verb == "MAIL":
                    sender, rcpts, good = cmd, [], 0
                    writer.write(b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    rcpts.append(cmd)
                    if "bad.example" in cmd:
                        writer.write(self.bad_reply + b"\r\n")
                    else:
                        good += 1
                        writer.write(b"250 2.1.5 ok\r\n")
                elif verb == "DATA":
                    if not good:
                        writer.write(b"554 5.5.1 no valid recipients\r\n")
                        continue
                    writer.write(b"354 go\r\n")
                    await writer.drain()
                    body = await reader.readuntil(b"\r\n.\r\n")
                    self.delivered.append((sender, rcpts, body))
                    writer.write(b"250 2.0.0 stored\r\n")
                elif verb == "RSET":
                    self.rsets += 1
                    if self.rsets == 1:
                        await asyncio.sleep(self.rset_delay)
                    sender, rcpts, good = "", [], 0
                    writer.write(b"250 2.0.0 reset\r\n")
                    await writer.drain()
                    self.late_reset_sent.set()
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def stop(self) -> None:
        self.server.stop()


def test_a_pipelined_rset_that_times_out_pools_no_connection_out_of_step(
    make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    upstream = SlowRsetUpstream(rset_delay=2.0)
    try:
        relay = make_relay(
            relay_upstream_port=upstream.port, relay_upstream_tls="none", relay_upstream_timeout_seconds=1
        )
        a, b = credentials.create(), credentials.create()
        # Client A: its recipient is refused by the upstream -> 550; the relay's RSET times out (1 s).
        with Client(relay, certs).login(a) as smtp:
            smtp.mail(f"app@{a.domain}")
            smtp.rcpt("x@bad.example")
            first = smtp.data(message(f"app@{a.domain}"))
        assert upstream.late_reset_sent.wait(10)  # the late "250 reset" is on its way to the pooled connection
        # Client B, another account, a perfectly good message: must be relayed (250).
        with Client(relay, certs).login(b) as smtp:
            smtp.mail(f"app@{b.domain}")
            smtp.rcpt("y@dest.example")
            second = smtp.data(message(f"app@{b.domain}"))
        assert first[0] == 550
        assert second[0] == 250, (second, upstream.commands)
    finally:
        upstream.stop()


# --- a 251 to RCPT is an acceptance (RFC 5321 §4.2.2/§3.4) -----------------------------------------------------
@pytest.mark.parametrize("pipelining", [False, True])
def test_rcpt_251_is_accepted(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials, pipelining: bool
) -> None:
    upstream = scripted(
        pipelining=pipelining, tls=server_context(certs.ca), replies={"RCPT": "251 2.1.5 User not local; will forward"}
    )
    relay = make_relay(relay_upstream_port=upstream.port)
    cred = credentials.create()
    with Client(relay, certs).login(cred) as smtp:
        smtp.mail(f"app@{cred.domain}")
        smtp.rcpt("a@dest.example")
        result = smtp.data(message(f"app@{cred.domain}"))
    assert result[0] == 250 and len(upstream.messages) == 1


# --- upstream certificate for another host name, signed by the trusted CA -----------------------------------
def test_upstream_certificate_for_another_host_is_refused(
    scripted: Any, make_relay: Any, certs: Certs, credentials: Credentials
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs.ca.issue_cert("mx.other.example", key_type=trustme.KeyType.ECDSA).configure_cert(context)
    upstream = scripted(tls=context)
    relay = make_relay(relay_upstream_port=upstream.port)
    cred = credentials.create()
    with Client(relay, certs).login(cred) as smtp:
        smtp.mail(f"app@{cred.domain}")
        smtp.rcpt("a@dest.example")
        result = smtp.data(message(f"app@{cred.domain}"))
    assert result[0] == 451 and upstream.messages == []


# --- the upstream drops the connection after the body, before its reply ----------------------------------
def test_upstream_disconnect_after_body_is_not_250(make_relay: Any, certs: Certs, credentials: Credentials) -> None:
    port = free_port()
    got: list[bytes] = []
    ready = threading.Event()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 up\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-up\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                got.append(await reader.readuntil(b"\r\n.\r\n"))
                writer.transport.abort()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.start_server(session, "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(5)
    relay = make_relay(relay_upstream_port=port, relay_upstream_tls="none")
    cred = credentials.create()
    with Client(relay, certs).login(cred) as smtp:
        smtp.mail(f"app@{cred.domain}")
        smtp.rcpt("a@dest.example")
        result = smtp.data(message(f"app@{cred.domain}"))
    assert len(got) == 1 and result[0] == 451, result


# --- after an upstream restart, the pool's closed connections cost clients nothing ---------------------------------
class RestartableUpstream:
    """Accepts everything, holds each end-of-data reply `hold` seconds (so concurrent messages open several
    connections); `drop_all()` closes every connection, as an upstream restart or reload does."""

    def __init__(self, *, pipelining: bool, hold: float = 0.5) -> None:
        self.pipelining, self.hold = pipelining, hold
        self.delivered = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server = LoopThread(self._session)
        self.port = self.server.port

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"220 up ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-up\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    await asyncio.sleep(self.hold)
                    self.delivered += 1
                    writer.write(b"250 2.0.0 stored\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return

    def drop_all(self) -> None:
        async def drop() -> None:
            for writer in self.writers:
                writer.write(b"421 4.3.2 restarting\r\n")
                writer.close()
            self.writers.clear()

        asyncio.run_coroutine_threadsafe(drop(), self.server.loop).result(5)

    def stop(self) -> None:
        self.server.stop()


@pytest.mark.parametrize("pipelining", [False, True])
def test_messages_after_an_upstream_restart_are_relayed_not_refused_451(
    make_relay: Any, certs: Certs, credentials: Credentials, pipelining: bool
) -> None:
    upstream = RestartableUpstream(pipelining=pipelining)
    try:
        relay = make_relay(relay_upstream_port=upstream.port, relay_upstream_tls="none")
        cred = credentials.create()
        sender = f"app@{cred.domain}"

        def send_one(_: int) -> int:
            with Client(relay, certs).login(cred) as smtp:
                smtp.mail(sender)
                smtp.rcpt("a@dest.example")
                return smtp.data(message(sender))[0]

        with ThreadPoolExecutor(8) as pool:  # eight messages at once: eight pooled upstream connections
            assert list(pool.map(send_one, range(8))) == [250] * 8
        upstream.drop_all()  # the upstream restarts (a 421, then closed); it is up again at once
        # Sent at once: each finds a pooled connection closed, or about to answer its MAIL with the 421.
        assert [send_one(i) for i in range(4)] == [250] * 4
    finally:
        upstream.stop()
