"""Outbound URLs a user gave us (callbacks, the workflow http-request node): refused when they
would reach inside the network.

`check_callback_url()` runs when the URL is submitted: scheme http/https, no credentials, a
host that resolves, and every address it resolves to public — not private, loopback,
link-local (the cloud metadata service at 169.254.169.254 among them), multicast or reserved —
unless the allow-list (`CONDUIT_WEBHOOK_ALLOWED_NETWORKS` / `_HOSTS`) permits it. The address is
what counts, so `localhost`, `2130706433`, `0177.0.0.1` and `::ffff:127.0.0.1` are all loopback.

A name may resolve elsewhere by the time the callback is sent (DNS rebinding), so the sender
calls `resolve_target()` again and connects to the address it checked (`CheckedTarget.address`),
sending the name as the Host header and, for https, as the TLS server name.

Resolution blocks: call these from a thread, never on an event loop (the `_async` forms do).
Messages name the field the URL came from (`callback_url` unless told otherwise).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from conduit.errors import InvalidParam
from conduit.infra.settings import WebhookSettings

FIELD = "callback_url"
MAX_URL_LENGTH = 2048
# Cloud metadata services, named as such (169.254.169.254 would also be "link-local").
METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]


class UnsafeUrl(InvalidParam):
    """The URL breaks a rule: refused for good (at delivery too: no retry helps)."""


class UnresolvableHost(InvalidParam):
    """The host does not resolve now; at delivery time that may pass, so it is retried."""


@dataclass(frozen=True)
class AllowList:
    networks: tuple[Network, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: WebhookSettings) -> AllowList:
        # Parsed once per setting's value: a submit with a callback asks on every request.
        return _allow_list(tuple(settings.networks), tuple(settings.hosts))

    def permits_host(self, host: str) -> bool:
        for allowed in self.hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]):
                    return True
            elif host == allowed:
                return True
        return False

    def permits_address(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


@functools.lru_cache(maxsize=8)
def _allow_list(networks: tuple[str, ...], hosts: tuple[str, ...]) -> AllowList:
    return AllowList(tuple(ipaddress.ip_network(item, strict=False) for item in networks), hosts)


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host was resolved and checked: connect to `address`, name `host`."""

    url: str  # normalised
    scheme: str
    host: str  # the name, IDNA-encoded and lower-case (or the IP literal)
    port: int
    address: str  # the checked IP to connect to
    path: str  # path and query, as sent

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name."""
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_callback_url(
    url: Any, settings: WebhookSettings, *, resolver: Resolver = system_resolver
) -> str:
    """The normalised URL, or `InvalidParam` (400) naming `callback_url` and the rule broken."""
    return resolve_target(url, AllowList.of(settings), resolver=resolver).url


async def check_callback_url_async(url: Any, settings: WebhookSettings) -> str:
    """`check_callback_url` for an event loop: a host that is an IP address needs no lookup and
    is checked at once; a name is resolved on a thread (resolution blocks). On a busy server
    the thread hop was a submit's longest wait (a queue behind the database's threads)."""
    return (await resolve_target_async(url, AllowList.of(settings))).url


async def resolve_target_async(
    url: Any, allow: AllowList, *, resolver: Resolver = system_resolver, field: str = FIELD
) -> CheckedTarget:
    """`resolve_target` for an event loop: an IP-literal host is checked at once, a name is
    resolved on a thread."""
    try:
        return resolve_target(url, allow, resolver=_literal_only, field=field)
    except _NeedsLookup:
        return await asyncio.to_thread(resolve_target, url, allow, resolver=resolver, field=field)


class _NeedsLookup(Exception):
    """The host is a name: `_literal_only` cannot resolve it."""


def _literal_only(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise _NeedsLookup(host) from None
    return [host]


def resolve_target(
    url: Any, allow: AllowList, *, resolver: Resolver = system_resolver, field: str = FIELD
) -> CheckedTarget:
    """Parse, resolve and check `url`; every address the host resolves to must be allowed.
    Messages start with `field` (the name of the setting or input the URL came from)."""
    parts = _parse(url, field)
    host = _host(parts, field)
    port = _port(parts, field)
    try:
        found = resolver(host, port)
    except (OSError, UnicodeError):
        found = []
    if not found:
        raise UnresolvableHost(f"{field}: the host {host} does not resolve")
    addresses = [_address(item) for item in found]
    if not allow.permits_host(host):
        for address in addresses:
            rule = _forbidden(address)
            if rule is not None and not allow.permits_address(address):
                raise UnsafeUrl(f"{field}: the host {host} resolves to a {rule} address {address}")
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    normalised = urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))
    return CheckedTarget(
        url=normalised,
        scheme=parts.scheme.lower(),
        host=host,
        port=port,
        address=str(addresses[0]),
        path=path,
    )


def _parse(url: Any, field: str) -> SplitResult:
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl(f"{field}: must be an http or https URL")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"{field}: must be at most {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 for char in url.strip()):
        raise UnsafeUrl(f"{field}: must not contain spaces or control characters")
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise UnsafeUrl(f"{field}: is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeUrl(f"{field}: the scheme must be http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrl(f"{field}: must not carry credentials (user:password@)")
    return parts


def _host(parts: SplitResult, field: str) -> str:
    raw = (parts.hostname or "").rstrip(".")
    if not raw:
        raise UnsafeUrl(f"{field}: must name a host")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    try:
        return raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeUrl(f"{field}: the host {raw!r} is not a valid name") from None


def _port(parts: SplitResult, field: str) -> int:
    try:
        port = parts.port
    except ValueError:
        raise UnsafeUrl(f"{field}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise UnsafeUrl(f"{field}: the port must be a number from 1 to 65535")
    return port or (443 if parts.scheme.lower() == "https" else 80)


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def _forbidden(address: Address) -> str | None:
    """The rule an address breaks, or None for a public one."""
    if address in METADATA:
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified or address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"
    return None
