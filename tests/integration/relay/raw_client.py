"""A raw-socket SMTP client for the relay tests: exact bytes on the wire (smuggling, pipelining, line limits)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.integration.relay.support import Certs, Credential


class Raw:
    """A byte-level SMTP client for what smtplib refuses to send (pipelining, bare CR/LF, injections)."""

    def __init__(
        self,
        port: int,
        *,
        implicit_tls: bool = False,
        certs: Certs | None = None,
        source: str = "127.0.0.1",
        timeout: float = 10,
    ) -> None:
        import socket

        self.certs = certs
        self.sock: Any = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        if implicit_tls:
            assert certs is not None
            self.sock = certs.client_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; pending {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> str:
        """One (possibly multi-line) reply, lines joined with \\n."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return "\n".join(x.decode("utf-8", "replace") for x in lines)

    def command(self, text: str | bytes) -> str:
        self.send(text.encode() + b"\r\n" if isinstance(text, str) else text)
        return self.reply()

    def starttls(self) -> None:
        assert self.certs is not None
        assert self.buffer == b"", self.buffer
        self.sock = self.certs.client_context().wrap_socket(self.sock, server_hostname="localhost")

    def closed(self, timeout: float = 5) -> bool:
        """True when the server closed the connection (EOF) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def plain_auth_arg(username: str, password: str) -> str:
    import base64

    return base64.b64encode(f"\0{username}\0{password}".encode()).decode()


def login_raw(raw: Raw, credential: Credential, *, implicit_tls: bool = False) -> None:
    """Banner, EHLO, STARTTLS (unless implicit), EHLO, AUTH PLAIN: a logged-in Raw session."""
    assert raw.reply().startswith("220")
    assert raw.command("EHLO raw.test").startswith("250")
    if not implicit_tls:
        assert raw.command("STARTTLS").startswith("220")
        raw.starttls()
        assert raw.command("EHLO raw.test").startswith("250")
    reply = raw.command(f"AUTH PLAIN {plain_auth_arg(credential.username, credential.password)}")
    assert reply.startswith("235"), reply
