"""Where we may send webhooks: https to public addresses only, unless explicitly allowed.

The check runs twice: on the URL (scheme, literal addresses), and on every address the host
name resolves to when connecting (a custom resolver), so a name that resolves to a private
address (DNS rebinding included) is refused too. ``allowed`` lists ``host:port`` pairs that
may be reached over plain http or on private addresses: the local sandboxes.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL


class EndpointRefused(Exception):
    """The endpoint is not one we may send personal data to."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64, compatible)."""
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64 or int(ip) >> 32 == 0:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        return _public(str(inner))
    return ip.is_global and not ip.is_multicast


def shown(url: str | URL) -> str:
    """A URL fit for logs and staff: no credentials, no query."""
    return str(URL(str(url)).with_user(None).with_query(None).with_fragment(None))


class DeliveryPolicy:
    def __init__(self, allowed: set[str] | None = None) -> None:
        self.allowed = {a.strip().lower() for a in (allowed or set()) if a.strip()}

    def is_allowed(self, host: str, port: int) -> bool:
        return f"{host.lower()}:{port}" in self.allowed

    def check_url(self, url: str) -> None:
        parsed = URL(url)
        if parsed.host is None or parsed.port is None:
            raise EndpointRefused(f"not an absolute http(s) URL: {shown(url)}")
        if self.is_allowed(parsed.host, parsed.port):
            return
        if parsed.scheme != "https":
            raise EndpointRefused(f"only https endpoints are allowed: {shown(parsed)}")
        try:
            literal = ipaddress.ip_address(parsed.host.strip("[]"))
        except ValueError:
            return  # a name: its addresses are checked when connecting
        if not _public(str(literal)):
            raise EndpointRefused(f"endpoint address is not public: {parsed.host}")

    def resolver(self) -> AbstractResolver:
        return _PublicOnlyResolver(self)


class _PublicOnlyResolver(AbstractResolver):
    def __init__(self, policy: DeliveryPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        answers = await self._inner.resolve(host, port, family)
        if self._policy.is_allowed(host, port):
            return answers
        public = [a for a in answers if _public(a["host"])]
        if not public:
            raise EndpointRefused(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()
