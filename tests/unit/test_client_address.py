"""Who is asking (bridge/client_address.py): the socket's peer, or X-Forwarded-For only from a trusted proxy."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from bridge.client_address import ClientAddresses, from_forwarded, parse_address, parse_networks

PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize("peer, headers, expected", [
    # No header, or a peer that is not a proxy: the peer, whatever the header says.
    ("198.51.100.4", [], "198.51.100.4"),
    ("198.51.100.4", ["203.0.113.7"], "198.51.100.4"),
    # From a trusted proxy: the first address from the right that is not one of ours.
    ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
    ("127.0.0.1", ["1.1.1.1, 203.0.113.7"], "203.0.113.7"),            # the client's own entry is ignored
    ("127.0.0.1", ["203.0.113.7, 10.1.2.3"], "203.0.113.7"),           # through two of our proxies
    ("127.0.0.1", ["203.0.113.7", "10.1.2.3"], "203.0.113.7"),         # the header given twice
    ("127.0.0.1", ["10.9.9.9, 10.1.2.3"], "10.9.9.9"),                 # nothing but our proxies
    ("127.0.0.1", ["203.0.113.7:5123"], "203.0.113.7"),                # with a port
    ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("127.0.0.1", ["2001:db8::1"], "2001:db8::1"),
    ("127.0.0.1", ["::ffff:203.0.113.7"], "203.0.113.7"),              # IPv4-mapped
    ("::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),               # a dual-stack socket's view of the proxy
    ("2001:db8:ffff::5", ["203.0.113.7"], "203.0.113.7"),
    # Malformed entries never fail and never let the client choose: the last hop we believed.
    ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
    ("127.0.0.1", [""], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.7, garbage"], "127.0.0.1"),
    ("127.0.0.1", ["garbage, 10.1.2.3"], "10.1.2.3"),
    ("127.0.0.1", ["203.0.113.7, 10.1.2.3, unknown"], "127.0.0.1"),
    ("127.0.0.1", ["[2001:db8::1"], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.7:port"], "127.0.0.1"),
    ("127.0.0.1", ["fe80::1%eth0"], "127.0.0.1"),
    ("127.0.0.1", ["1" * 5000], "127.0.0.1"),
    ("127.0.0.1", [",,,"], "127.0.0.1"),
    ("127.0.0.1", ["²⁰³.0.113.7"], "127.0.0.1"),
    # A peer that is not an address at all (a Unix socket): kept as it is.
    ("", ["203.0.113.7"], ""),
])
def test_the_client_address(peer: str, headers: list[str], expected: str):
    assert from_forwarded(peer, headers, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_read():
    assert from_forwarded("127.0.0.1", ["203.0.113.7"], ()) == "127.0.0.1"


def test_only_the_last_hops_are_walked():
    many = ", ".join(["203.0.113.7"] + ["10.0.0.1"] * 100)
    assert from_forwarded("127.0.0.1", [many], PROXIES) == "10.0.0.1"


@pytest.mark.parametrize("text", ["1.2.3.4:", "1.2.3.4:99:1", "[::1]x", "[::1]:", "[]", "a" * 70])
def test_not_addresses(text: str):
    assert parse_address(text) is None


class _Transport:
    """What aiohttp asks a socket for the peer; only that."""

    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default=None):  # type: ignore[no-untyped-def]
        return (self.peer, 40000) if name == "peername" else default


def test_a_request_is_read_through_the_same_walk():
    def request(peer: str):  # type: ignore[no-untyped-def]
        return make_mocked_request("GET", "/", headers={"X-Forwarded-For": "203.0.113.7"},
                                   transport=_Transport(peer))
    assert ClientAddresses(["127.0.0.1"])(request("127.0.0.1")) == "203.0.113.7"
    assert ClientAddresses(["127.0.0.1"])(request("127.0.0.9")) == "127.0.0.9"     # not a proxy: header ignored
    assert ClientAddresses()(request("127.0.0.1")) == "127.0.0.1"                   # no proxies configured
