"""Which addresses an avatar may be fetched from (issue 13, finding 7).

``ipaddress.is_global`` calls several IPv6 forms that lead to loopback,
private or link-local IPv4 "global". A host name resolving to one must be
refused before any connection is attempted. Resolving is an external call,
so the fetch is given a resolver here; the socket class is replaced by one
that records connection attempts and makes none.
"""

from __future__ import annotations

import socket

import pytest

from danmaku import avatars

URL = "http://avatars.example/a.png"
LIMITS = avatars.FetchLimits(timeout_s=2.0)

# Each leads to an address no avatar may come from.
DENIED = [
    pytest.param("::127.0.0.1", id="ipv4-compatible-loopback"),
    pytest.param("::a9fe:a9fe", id="ipv4-compatible-metadata"),
    pytest.param("::8.8.8.8", id="ipv4-compatible-even-if-public"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
    pytest.param("64:ff9b::7f00:1", id="nat64-loopback"),
    pytest.param("64:ff9b::a00:1", id="nat64-private"),
    pytest.param("64:ff9b::e000:1", id="nat64-multicast"),
    pytest.param("64:ff9b:1::a9fe:a9fe", id="local-use-nat64"),
    pytest.param("64:ff9b:1:ffff::808:808", id="local-use-nat64-any-layout"),
    pytest.param("2002:a9fe:a9fe::1", id="6to4-metadata"),
    pytest.param("2002:7f00:1::1", id="6to4-loopback"),
    pytest.param("2002:808:808::1", id="6to4-even-if-public"),
    pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", id="teredo"),
    pytest.param("::ffff:0:a9fe:a9fe", id="ipv4-translated"),
    pytest.param("fec0::1", id="site-local"),
    # Refused before, kept refused.
    pytest.param("::1", id="ipv6-loopback"),
    pytest.param("::ffff:127.0.0.1", id="ipv4-mapped-loopback"),
    pytest.param("::ffff:169.254.169.254", id="ipv4-mapped-metadata"),
    pytest.param("fe80::1%lo", id="link-local-with-zone"),
    pytest.param("fc00::1", id="unique-local"),
    pytest.param("ff02::1", id="ipv6-multicast"),
    pytest.param("127.0.0.1", id="loopback"),
    pytest.param("169.254.169.254", id="metadata"),
    pytest.param("10.1.2.3", id="private"),
    pytest.param("100.64.0.1", id="carrier-grade-nat"),
    pytest.param("224.0.0.1", id="multicast"),
]
ALLOWED = [
    pytest.param("8.8.8.8", id="public-ipv4"),
    pytest.param("2001:4860:4860::8888", id="public-ipv6"),
    pytest.param("::ffff:8.8.8.8", id="ipv4-mapped-public"),
    # IPv6-only hosts behind DNS64 reach IPv4-only servers this way.
    pytest.param("64:ff9b::808:808", id="nat64-public"),
]


@pytest.mark.parametrize("ip", DENIED)
def test_address_denied(ip):
    assert avatars.address_allowed(ip) is False


@pytest.mark.parametrize("ip", ALLOWED)
def test_address_allowed(ip):
    assert avatars.address_allowed(ip) is True


def entry(ip: str, port: int = 80) -> tuple:
    if ":" in ip:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))


def resolver(*ips: str):
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[tuple]:
        asked.append((host, port))
        return [entry(ip, port) for ip in ips]

    resolve.asked = asked
    return resolve


@pytest.fixture
def connect_attempts(monkeypatch) -> list[str]:
    """Addresses the fetch tried to connect to; no connection is made."""
    attempts: list[str] = []

    class RecordingSocket:
        def __init__(self, family: int, kind: int, proto: int) -> None:
            pass

        def settimeout(self, timeout: float | None) -> None:
            pass

        def connect(self, address: tuple) -> None:
            attempts.append(address[0])
            raise ConnectionRefusedError("the test makes no connection")

        def shutdown(self, how: int) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(avatars.socket, "socket", RecordingSocket)
    return attempts


@pytest.mark.parametrize("ip", DENIED)
def test_fetch_of_a_host_resolving_to_a_denied_address_connects_nowhere(ip, connect_attempts):
    resolve = resolver(ip)

    with pytest.raises(avatars.AvatarError, match="resolves only to non-public addresses"):
        avatars.fetch_thumbnail(URL, limits=LIMITS, resolve=resolve)

    assert resolve.asked == [("avatars.example", 80)]
    assert connect_attempts == []


def test_fetch_tries_only_the_allowed_addresses_a_host_resolves_to(connect_attempts):
    resolve = resolver("64:ff9b::a9fe:a9fe", "::127.0.0.1", "64:ff9b::808:808", "2002:a9fe:a9fe::1", "8.8.4.4")

    with pytest.raises(avatars.AvatarError, match="cannot connect"):
        avatars.fetch_thumbnail(URL, limits=LIMITS, resolve=resolve)

    assert connect_attempts == ["64:ff9b::808:808", "8.8.4.4"]


def test_allow_private_hosts_lets_any_address_be_tried(connect_attempts):
    limits = avatars.FetchLimits(timeout_s=2.0, allow_private_hosts=True)

    with pytest.raises(avatars.AvatarError, match="cannot connect"):
        avatars.fetch_thumbnail(URL, limits=limits, resolve=resolver("64:ff9b::a9fe:a9fe"))

    assert connect_attempts == ["64:ff9b::a9fe:a9fe"]
