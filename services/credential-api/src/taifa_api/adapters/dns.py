"""Domain verification lookups with dnspython against the configured nameservers."""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from taifa_api.application.ports import DnsAnswer


class TxtResolver:
    """Reads TXT records; every failure becomes a human reason, never an exception.

    NXDOMAIN and "no TXT record" are conclusive (the record is provably absent); a timeout or SERVFAIL is not.
    """

    def __init__(self, nameservers: list[tuple[str, int]], timeout: float) -> None:
        self._nameservers = nameservers
        self._timeout = timeout

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if not self._nameservers:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in self._nameservers]
        resolver.lifetime = self._timeout
        resolver.timeout = self._timeout
        resolver.cache = None
        return resolver

    async def lookup_txt(self, name: str) -> DnsAnswer:
        try:
            answer = await self._resolver().resolve(name, "TXT", search=False)
        except dns.resolver.NXDOMAIN:
            return DnsAnswer(failure=f"no DNS record at {name}")
        except dns.resolver.NoAnswer:
            return DnsAnswer(failure=f"no TXT record at {name}")
        except dns.exception.Timeout:
            return DnsAnswer(failure=f"DNS lookup of {name} timed out", conclusive=False)
        except dns.exception.DNSException as exc:  # SERVFAIL (NoNameservers) and the like: no answer at all
            return DnsAnswer(failure=f"DNS lookup of {name} failed ({type(exc).__name__})", conclusive=False)
        values = [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
        return DnsAnswer(values=values)
