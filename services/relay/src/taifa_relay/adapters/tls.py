"""TLS for the listeners: TLS 1.2+ with AEAD ciphers only, certificate and key reloaded when their files change."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from taifa_runtime.lifecycle import sleep_unless_stopped

log = logging.getLogger("taifa.relay.tls")

# TLS 1.2 suites: forward secret AEAD only (no NULL/EXPORT/RC4/3DES/CBC); TLS 1.3 suites are always AEAD.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES"


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    # TLS 1.3: one session ticket per full handshake, as Postfix 3.7 issues (OpenSSL's default is two): a client that
    # resumes still can, and each handshake costs one ticket's encryption and record less (269 -> 254 us of server
    # CPU per handshake, issue 18).
    context.num_tickets = 1
    context.load_cert_chain(cert_file, key_file)
    return context


class ReloadingContext:
    """One server SSLContext whose certificate is replaced in place when the files change (new handshakes)."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = server_context(cert_file, key_file)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[float, float, int, int]:
        cert, key = self.cert_file.stat(), self.key_file.stat()
        return (cert.st_mtime, key.st_mtime, cert.st_size, key.st_size)

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return False
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            # A half-written pair: keep serving the old certificate and retry at the next check.
            log.warning("certificate reload failed, keeping the old one", extra={"error": type(exc).__name__})
            return False
        self._stamp = stamp
        log.info("certificate reloaded", extra={"cert_file": str(self.cert_file)})
        return True

    async def watch(self, interval: float, stop: asyncio.Event) -> None:
        while not await sleep_unless_stopped(stop, interval):
            self.reload_if_changed()


def upstream_context(*, verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """Client context for the upstream MTA: verified against `ca_file` (or the system CAs) unless told not to."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
