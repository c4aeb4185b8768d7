"""Scripted upstream SMTP servers for what the real sink cannot do: inject after STARTTLS, refuse, fail."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from taifa_localstack import free_port


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A TLS server context for 127.0.0.1 with a certificate of `ca` (the relay trusts the test CA's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.ECDSA).configure_cert(context)
    return context


class LoopThread:
    """An asyncio server on 127.0.0.1 serving `session`, in a thread and event loop of its own (the relay under test
    runs in another): `port`, `loop` (for calls into it) and `stop()`."""

    def __init__(self, session: Any) -> None:
        self.port = free_port()
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.server = self.loop.run_until_complete(asyncio.start_server(session, "127.0.0.1", self.port))
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)


@dataclass
class ScriptedUpstream:
    """A minimal SMTP server in a thread. `replies` overrides the reply per verb (e.g. {"RCPT": "550 ..."});
    `inject_after_starttls` is sent in the same segment as the 220 to STARTTLS."""

    tls: ssl.SSLContext | None = None
    replies: dict[str, str] = field(default_factory=dict)
    inject_after_starttls: bytes = b""
    pipelining: bool = False  # offer PIPELINING (RFC 2920): commands are read line by line, so answered in order
    # MAIL commands whose following command had arrived with them (the client pipelined the envelope).
    pipelined_mails: int = 0
    port: int = field(default_factory=free_port)
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    _loop: Any = None
    _thread: Any = None
    _server: Any = None

    def start(self) -> ScriptedUpstream:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", self.port))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls_active = False
        writer.write(b"220 upstream.test ESMTP\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                command = line.decode(errors="replace").strip()
                verb = command.split(" ", 1)[0].upper()
                if verb == "MAIL" and reader._buffer:  # type: ignore[attr-defined]
                    self.pipelined_mails += 1
                self.commands.append(command if tls_active or verb != "STARTTLS" else "STARTTLS")
                if verb == "EHLO":
                    starttls = b"250-STARTTLS\r\n" if self.tls is not None and not tls_active else b""
                    pipelining = b"250-PIPELINING\r\n" if self.pipelining else b""
                    writer.write(b"250-upstream.test\r\n" + starttls + pipelining + b"250 8BITMIME\r\n")
                elif verb == "STARTTLS":
                    writer.write(b"220 ok\r\n" + self.inject_after_starttls)
                    await writer.drain()
                    assert self.tls is not None
                    await writer.start_tls(self.tls)
                    tls_active = True
                    self.commands.append("<tls>")
                elif verb == "DATA":
                    if "DATA" in self.replies and self.replies["DATA"].startswith(("4", "5")):
                        writer.write(self.replies["DATA"].encode() + b"\r\n")
                        continue
                    writer.write(b"354 go ahead\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.messages.append(data)
                    writer.write(self.replies.get("END", "250 2.0.0 stored").encode() + b"\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(self.replies.get(verb, "250 OK").encode() + b"\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    """Starts ScriptedUpstream(**options) servers for a test and stops them after it."""
    started: list[ScriptedUpstream] = []

    def start(**options: Any) -> ScriptedUpstream:
        upstream = ScriptedUpstream(**options).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()
