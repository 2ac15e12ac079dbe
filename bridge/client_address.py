"""Who is asking: the one place a request's client address comes from.

Every per-address decision uses it: chat creation and the other limits, the ``!block`` check, the
WebSocket cap per address, console sign-in, and the source of an audited refusal.

The address is the socket's peer, unless that peer is one of ``web.trusted_proxies``: then
``X-Forwarded-For`` is read from the right, skipping the hops that are themselves trusted proxies,
and the first address that is not one is the client.  Each proxy appends the address it saw, so
only the entries our own proxies added can be believed; anything to the left of the first
untrusted entry was written by the client and is ignored.  A header from a peer that is not a
trusted proxy is ignored entirely (anyone can send one).

Malformed entries never raise: the walk stops at the first entry that is not an address, and the
client is the last hop that was believed (the proxy that handed the garbage on), so a client cannot
choose its address by sending nonsense, nor fail the request.  Entries may carry a port
("203.0.113.7:5123", "[2001:db8::1]:443", as some load balancers write them); IPv4-mapped IPv6
addresses count as the IPv4 address.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS = 20           # entries of X-Forwarded-For looked at, from the right


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR ranges (``10.0.0.5``, ``10.0.0.0/8``, ``::1``); ValueError names a bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or a CIDR range such as 10.0.0.0/8") from None
    return tuple(out)


def parse_address(text: str) -> Address | None:
    """An address as a proxy writes it, or None: IPv4, IPv6, either with a port, "[v6]" or "[v6]:port"."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not (text[end + 1] == ":" and text[end + 2:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:                      # IPv4 with a port
        host, port = text.split(":")
        if not port.isdigit():
            return None
        text = host
    if "%" in text:                                   # a zone index says nothing about who the client is
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Address, trusted: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted)


def from_forwarded(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address, given the socket's peer, the X-Forwarded-For header(s) and the trusted proxies."""
    peer_ip = parse_address(peer) if peer else None
    if peer_ip is None:
        return peer or ""
    if not trusted or not _trusted(peer_ip, trusted):
        return str(peer_ip)
    hops = [h for header in forwarded_for for h in header.split(",")]
    client = peer_ip
    for hop in reversed(hops[-MAX_HOPS:]):
        ip = parse_address(hop)
        if ip is None:
            break                       # garbage: believe no further, keep the last hop we did believe
        client = ip
        if not _trusted(ip, trusted):
            break                       # the first address our proxies did not add themselves: the client
    return str(client)


class ClientAddresses:
    """``addresses(request)`` → the client's address (see the module's doc); one per bridge."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = parse_networks(trusted_proxies)

    def __call__(self, request: web.BaseRequest) -> str:
        forwarded = request.headers.getall("X-Forwarded-For", []) if self.trusted else []
        return from_forwarded(request.remote or "", forwarded, self.trusted)
