"""The webhook dispatcher's HTTP client (httpx): POSTs to an address it checked a moment before, nothing else.

At every attempt the URL's host is resolved again and every address judged by `domain.webhook_urls` (a host that
now resolves to a forbidden address is refused: nothing is sent). The request then goes to one of the checked
addresses, the URL rewritten to that IP literal, with the original `Host` header and, for https, the original
name as TLS SNI and certificate name (`extensions={"sni_hostname": host}`), so DNS rebinding cannot switch the
target between the check and the connection. Redirects are never followed (a 3xx is a failed attempt), proxies
from the environment are ignored (they would make the connection elsewhere), and the response body is read no
further than a short excerpt. Timeouts: one on connecting, one on the whole attempt.

Connections are kept alive per endpoint URL: each URL has a small client (a connection pool keyed by the IP) of its
own, so a connection opened and verified for one host name is never reused for another name that resolves to the
same IP, while a backlog to one endpoint does not pay a TLS handshake per delivery. (One pool shared by every
endpoint of a host also cost twice the CPU per request at 50 in flight: httpcore's pool work grows with its size.)
A client idle for KEEPALIVE_SECONDS is closed; every client shares one TLS context (CA bundle loaded once).
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx

from taifa_api.adapters.webhook_resolver import resolve_addresses
from taifa_api.application.webhook_ports import SendResult
from taifa_api.domain import webhook_delivery as rules
from taifa_api.domain.webhook_urls import InvalidWebhookUrl, IPAddress, WebhookUrl, first_forbidden, parse_webhook_url

# httpcore asks `import sniffio` at every request; when sniffio is not installed a failed import is not cached, so
# each request scanned sys.path (seen as the dispatcher's hottest frame). Record its absence once.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]  # None: "not installed", per importlib

# (host, port) -> every address it resolves to; OSError or TimeoutError when it does not.
Resolve = Callable[[str, int], Awaitable[tuple[IPAddress, ...]]]
USER_AGENT = "Taifa-Webhooks/1"
KEEPALIVE_SECONDS = 30.0
CONNECTIONS_PER_URL = 2  # one attempt in flight per endpoint and process; a second for the odd shared URL
EXCERPT_BYTES = 4096  # read at most this much of a response body, of which EXCERPT_CHARS characters are kept


def system_resolver(timeout: float) -> Resolve:
    async def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
        return await resolve_addresses(host, port, timeout)

    return resolve


def _url_for(scheme: str, ip: IPAddress, port: int, target: str) -> str:
    host = f"[{ip.compressed}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    return f"{scheme}://{host}:{port}{target}"


class PinnedWebhookSender:
    """`send()` never raises for the network: every failure is a SendResult with an error (no secret in it)."""

    def __init__(
        self,
        *,
        allow_http: bool,
        connect_timeout: float,
        request_timeout: float,
        resolve: Resolve,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allow_http = allow_http
        self.allow_loopback = allow_http  # the development setting allows both (CONTRACT §8)
        self.request_timeout = request_timeout
        self.resolve = resolve
        self._timeout = httpx.Timeout(request_timeout, connect=connect_timeout)
        # One TLS context for every client (httpx's default trust: certifi's bundle), not one CA load per client.
        self._verify = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._clients: dict[str, _HostClient] = {}
        self._next_sweep = 0.0

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for entry in clients:
            await entry.client.aclose()

    def _client_for(self, parsed: WebhookUrl) -> _HostClient:
        key = parsed.url
        entry = self._clients.get(key)
        if entry is None:
            client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                verify=self._verify,  # the certificate must be valid for the URL's host name (sent as SNI)
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=CONNECTIONS_PER_URL,
                    max_keepalive_connections=CONNECTIONS_PER_URL,
                    keepalive_expiry=KEEPALIVE_SECONDS,
                ),
                # identity: the body is read raw (`aiter_raw`) and its start kept as the excerpt; a compressed one
                # would be bytes, not the receiver's text.
                headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
            )
            entry = self._clients[key] = _HostClient(client)
        entry.users += 1
        return entry

    async def _release(self, entry: _HostClient) -> None:
        entry.users -= 1
        now = time.monotonic()
        entry.idle_since = now
        if now < self._next_sweep:
            return
        self._next_sweep = now + KEEPALIVE_SECONDS
        for key, idle in list(self._clients.items()):
            if idle.users == 0 and now - idle.idle_since > KEEPALIVE_SECONDS:
                del self._clients[key]
                await idle.client.aclose()

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        started = time.monotonic()

        def done(
            status: int | None = None, error: str | None = None, *, excerpt: str | None = None, refused: bool = False
        ) -> SendResult:
            return SendResult(
                status_code=status,
                latency_ms=int((time.monotonic() - started) * 1000),
                error=rules.short_error(error) if error else None,
                body_excerpt=excerpt,
                refused=refused,
            )

        try:
            parsed = parse_webhook_url(url, allow_http=self.allow_http)
        except InvalidWebhookUrl as exc:
            return done(error=f"refused: {exc}", refused=True)
        try:
            async with asyncio.timeout(self.request_timeout):
                if parsed.address is not None:
                    addresses: tuple[IPAddress, ...] = (parsed.address,)
                else:
                    addresses = await self.resolve(parsed.host, parsed.port)
                if not addresses:
                    return done(error="the host does not resolve")
                forbidden = first_forbidden(addresses, self.allow_loopback)
                if forbidden is not None:
                    return done(error=f"refused: the host resolves to {forbidden[1]} ({forbidden[0]})", refused=True)
                entry = self._client_for(parsed)
                try:
                    status, excerpt = await self._post(entry.client, parsed, url, addresses, headers, body)
                finally:
                    await self._release(entry)
                return done(status, None if rules.delivered(status) else f"HTTP {status}", excerpt=excerpt)
        except TimeoutError:
            return done(error=f"timed out after {self.request_timeout:g} s")
        except httpx.TimeoutException as exc:
            return done(error=f"timed out ({type(exc).__name__})")
        except (OSError, UnicodeError, ValueError) as exc:
            return done(error=f"the host does not resolve ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return done(error=f"{type(exc).__name__}: {_reason(exc)}")

    async def _post(
        self,
        client: httpx.AsyncClient,
        parsed: WebhookUrl,
        url: str,
        addresses: tuple[IPAddress, ...],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, str | None]:
        """Try the checked addresses in resolver order until one accepts the connection."""
        scheme, host, port = parsed.scheme, parsed.host, parsed.port
        target = httpx.URL(url).raw_path.decode("ascii")
        default_port = 443 if scheme == "https" else 80
        host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and port == default_port:  # an IPv6 literal in the Host header keeps its brackets
            host_header = f"[{host}]"
        elif ":" in host:
            host_header = f"[{host}]:{port}"
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        last: httpx.ConnectError | None = None
        for ip in addresses:
            request = client.build_request(
                "POST",
                _url_for(scheme, ip, port, target),
                headers={**headers, "host": host_header},
                content=body,
                extensions=extensions,
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last = exc
                continue
            try:
                chunk = b""
                async for part in response.aiter_raw():
                    chunk += part
                    if len(chunk) >= EXCERPT_BYTES:
                        break
            finally:
                await response.aclose()
            return response.status_code, rules.excerpt(chunk[:EXCERPT_BYTES])
        assert last is not None
        raise last


class _HostClient:
    __slots__ = ("client", "idle_since", "users")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.users = 0
        self.idle_since = time.monotonic()


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else ""
