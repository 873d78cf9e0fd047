"""Who sent a request that came through a proxy (HAProxy's `option forwardfor`, nginx, a cloud
load balancer), for the rule that some routes answer local clients only (mr.server.security).

A replica behind a balancer on its own host sees every client at the balancer's 127.0.0.1, so
the socket alone would make every client of the balancer a local one. Hence:

- A request without a forwarding header comes from its socket's peer.
- A request with one (X-Forwarded-For, Forwarded, X-Real-IP) from a trusted proxy (`mr serve
  --trusted-proxy`, MR_TRUSTED_PROXIES: addresses or networks) comes from the forwarded client:
  the rightmost address of X-Forwarded-For / Forwarded that is not itself a trusted proxy.
  Addresses to its left are ignored: a client may write anything there.
- A request with one from any other peer comes from an unknown client: it went through a proxy
  that mr was not told to believe. So is one whose headers disagree, or name no address.
- A request is local only when every hop from its client to mr is a loopback address: a
  loopback address forwarded by a proxy on another machine is that machine, not this one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Headers = Iterable[tuple[bytes, bytes]]

CHAINS = (b"x-forwarded-for", b"forwarded")  # headers that name the client and the proxies between
MARKERS = frozenset({*CHAINS, b"x-real-ip"})  # any of them: the request came through a proxy


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """"127.0.0.1", "10.0.0.0/8", "[::1]" -> networks; ValueError naming a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip().strip("[]"), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """`192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]:80`, `"[::1]"` -> the address (an IPv4-mapped
    IPv6 address as IPv4); None for anything else (`unknown`, an obfuscated `_name`, garbage)."""
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _forwarded_for(value: str) -> list[str]:
    """RFC 7239: each element's `for=` (an element without one names no address)."""
    hops = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            name, _, text = pair.partition("=")
            if name.strip().lower() == "for":
                found = text
        hops.append(found)
    return hops


def _chains(headers: Headers) -> tuple[bool, list[list[str]]]:
    """(whether any forwarding header is present, the hop lists of X-Forwarded-For and Forwarded
    in the order they were sent; each header's repeated lines joined as one list)."""
    proxied = False
    found: dict[bytes, list[str]] = {name: [] for name in CHAINS}
    for name, value in headers:
        if name in MARKERS:
            proxied = True
            if name in found:
                text = value.decode("latin-1")
                found[name] += _forwarded_for(text) if name == b"forwarded" else text.split(",")
    return proxied, [hops for hops in found.values() if hops]


def _walk(peer: Address, hops: list[str], trusted: Sequence[Network]) -> list[Address] | None:
    """From the peer leftwards while the address is a trusted proxy: the route, client first."""
    route = [peer]
    for text in reversed(hops):
        address = parse_address(text)
        if address is None:
            return None
        route.append(address)
        if not _is_trusted(address, trusted):
            break
    return route[::-1]


def client_route(client: Sequence[object] | None, headers: Headers,
                 trusted: Sequence[Network]) -> list[Address] | None:
    """The addresses from the request's client to mr, the client first; None when unknown."""
    peer = parse_address(str(client[0])) if client else None
    if peer is None:
        return None
    proxied, chains = _chains(headers)
    if not proxied:
        return [peer]
    if not chains or not _is_trusted(peer, trusted):
        return None
    routes = [_walk(peer, hops, trusted) for hops in chains]
    # Two headers that tell different stories: one of them was written by the client.
    return routes[0] if all(route == routes[0] for route in routes) else None


def is_local(route: list[Address] | None) -> bool:
    return route is not None and all(address.is_loopback for address in route)
