"""The SSRF rules of callback URLs (`conduit/infra/ssrf.py`). Hosts are resolved by the system
resolver (numeric forms and `localhost` need no DNS); a public name is given by a resolver
that answers a fixed address, since the test machine may have no DNS."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from conduit.errors import InvalidParam
from conduit.infra.settings import WebhookSettings
from conduit.infra.ssrf import (
    AllowList,
    UnresolvableHost,
    UnsafeUrl,
    check_callback_url,
    resolve_target,
)

NOTHING_ALLOWED = WebhookSettings(allowed_networks="", allowed_hosts="")
LOOPBACK_ALLOWED = WebhookSettings(allowed_networks="127.0.0.0/8,::1/128")


def answers(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return resolve


def refused(url: object, settings: WebhookSettings = NOTHING_ALLOWED, **kwargs: object) -> str:
    with pytest.raises(InvalidParam) as caught:
        check_callback_url(url, settings, **kwargs)  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert caught.value.code == "invalid_param"
    assert caught.value.message.startswith("callback_url: ")
    return caught.value.message


class TestShape:
    @pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://a"])
    def test_only_http_and_https(self, url: str) -> None:
        assert "scheme must be http or https" in refused(url)

    @pytest.mark.parametrize("url", [None, "", 42, "   "])
    def test_not_a_url(self, url: object) -> None:
        assert "http or https URL" in refused(url)

    def test_credentials_in_the_url_are_refused(self) -> None:
        assert "credentials" in refused("https://user:pw@example.com/hook")
        assert "credentials" in refused("https://user@example.com/hook")

    def test_a_bad_port_is_refused(self) -> None:
        assert "port" in refused("http://example.com:99999/")
        assert "port" in refused("http://example.com:0/")

    def test_control_characters_are_refused(self) -> None:
        assert "control characters" in refused("http://example.com/a b")

    def test_a_host_that_does_not_resolve(self) -> None:
        message = refused("https://no-such-host.invalid/hook")
        assert "does not resolve" in message
        with pytest.raises(UnresolvableHost):
            check_callback_url("https://no-such-host.invalid/hook", NOTHING_ALLOWED)

    def test_a_public_host_is_normalised(self) -> None:
        url = check_callback_url(
            "HTTPS://Example.COM./hooks/in?x=1#frag",
            NOTHING_ALLOWED,
            resolver=answers("93.184.216.34"),
        )
        assert url == "https://example.com/hooks/in?x=1"


class TestAddresses:
    @pytest.mark.parametrize(
        ("url", "rule", "address"),
        [
            ("http://localhost:8080/hook", "loopback", "127.0.0.1"),
            ("http://127.0.0.1/", "loopback", "127.0.0.1"),
            ("http://2130706433/", "loopback", "127.0.0.1"),  # decimal
            ("http://0177.0.0.1/", "loopback", "127.0.0.1"),  # octal
            ("http://0x7f.1/", "loopback", "127.0.0.1"),  # hex, short form
            ("http://[::1]/", "loopback", "::1"),
            ("http://[::ffff:127.0.0.1]/", "loopback", "127.0.0.1"),  # IPv4-mapped IPv6
            ("http://[::ffff:10.0.0.1]/", "private", "10.0.0.1"),
            ("http://169.254.169.254/latest/meta-data/", "metadata", "169.254.169.254"),
            ("http://[fd00:ec2::254]/", "metadata", "fd00:ec2::254"),
            ("http://169.254.1.1/", "link-local", "169.254.1.1"),
            ("http://[fe80::1]/", "link-local", "fe80::1"),
            ("http://10.1.2.3/", "private", "10.1.2.3"),
            ("http://172.16.0.1/", "private", "172.16.0.1"),
            ("http://192.168.1.1/", "private", "192.168.1.1"),
            ("http://[fc00::1]/", "private", "fc00::1"),
            ("http://224.0.0.1/", "multicast", "224.0.0.1"),
            ("http://[ff02::1]/", "multicast", "ff02::1"),
            ("http://0.0.0.0/", "reserved", "0.0.0.0"),
            ("http://240.0.0.1/", "reserved", "240.0.0.1"),
            ("http://100.64.0.1/", "reserved", "100.64.0.1"),  # shared address space (CGN)
        ],
    )
    def test_an_address_inside_the_network_is_refused_naming_the_rule(
        self, url: str, rule: str, address: str
    ) -> None:
        message = refused(url)
        assert f"resolves to a {rule} address {address}" in message

    def test_a_name_resolving_to_any_private_address_is_refused(self) -> None:
        message = refused(
            "https://hooks.example.com/", resolver=answers("93.184.216.34", "10.0.0.7")
        )
        assert "private address 10.0.0.7" in message
        with pytest.raises(UnsafeUrl):
            check_callback_url(
                "https://hooks.example.com/", NOTHING_ALLOWED, resolver=answers("10.0.0.7")
            )


class TestAllowList:
    def test_allowed_networks_permit_loopback_v4_and_v6(self) -> None:
        assert check_callback_url("http://localhost:9/x", LOOPBACK_ALLOWED).startswith(
            "http://localhost:9/"
        )
        assert check_callback_url("http://[::1]:9/x", LOOPBACK_ALLOWED) == "http://[::1]:9/x"
        assert check_callback_url("http://2130706433/", LOOPBACK_ALLOWED)

    def test_allowed_networks_permit_nothing_else(self) -> None:
        assert "private address 10.0.0.1" in refused("http://10.0.0.1/", LOOPBACK_ALLOWED)
        assert "metadata" in refused("http://169.254.169.254/", LOOPBACK_ALLOWED)

    def test_an_allowed_host_may_resolve_anywhere(self) -> None:
        settings = WebhookSettings(allowed_hosts="hooks.internal,*.corp.example")
        internal = answers("10.0.0.5")
        assert check_callback_url("http://hooks.internal/x", settings, resolver=internal)
        assert check_callback_url("http://a.corp.example/x", settings, resolver=internal)
        assert "private" in refused("http://corp.example.evil/x", settings, resolver=internal)

    def test_a_bad_network_setting_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not an address or CIDR network"):
            WebhookSettings(allowed_networks="127.0.0.0/8,not-a-network")


class TestTarget:
    def test_the_target_connects_to_the_checked_address_and_names_the_host(self) -> None:
        target = resolve_target(
            "https://hooks.example.com:8443/in?a=1",
            AllowList(),
            resolver=answers("93.184.216.34"),
        )
        assert target.connect_url == "https://93.184.216.34:8443/in?a=1"
        assert target.host_header == "hooks.example.com:8443"
        assert target.host == "hooks.example.com"

    def test_an_ipv6_target_is_bracketed(self) -> None:
        target = resolve_target("http://[::1]:9000/x", AllowList.of(LOOPBACK_ALLOWED))
        assert target.connect_url == "http://[::1]:9000/x"
        assert target.host_header == "[::1]:9000"


async def _checked_on_a_thread(url: str) -> str:
    from conduit.infra.ssrf import check_callback_url_async

    return await check_callback_url_async(url, LOOPBACK_ALLOWED)


def test_the_async_check_resolves_off_the_event_loop() -> None:
    import asyncio

    assert asyncio.run(_checked_on_a_thread("http://localhost:9/x")) == "http://localhost:9/x"


def test_the_async_check_of_an_address_needs_no_thread_and_refuses_the_same() -> None:
    """An IP-literal host is checked on the loop (no lookup); the rules are the same."""
    import asyncio
    import threading

    from conduit.infra.ssrf import check_callback_url_async

    async def checked(url: str, settings: WebhookSettings) -> tuple[str, int]:
        threads = threading.active_count()
        result = await check_callback_url_async(url, settings)
        return result, threading.active_count() - threads

    url, new_threads = asyncio.run(checked("http://127.0.0.1:9/x", LOOPBACK_ALLOWED))
    assert url == "http://127.0.0.1:9/x" and new_threads == 0
    with pytest.raises(UnsafeUrl, match="loopback"):
        asyncio.run(checked("http://127.0.0.1:9/x", WebhookSettings()))
    with pytest.raises(UnsafeUrl, match=r"169\.254\.169\.254"):
        asyncio.run(checked("http://[::ffff:169.254.169.254]/x", WebhookSettings()))
