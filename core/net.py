"""Which addresses outbound requests may reach (SSRF): private, loopback, link-local, reserved and shared
addresses are refused unless the host or its network is allow-listed (ORCHESTRATOR_HTTP_ALLOWED_HOSTS).
Used by the workflow engine's `http` and `llm` nodes and by the LLM framework adapters."""

from __future__ import annotations

import ipaddress
import socket


class PrivateAddress(ValueError):
    """The host resolves to an address outbound requests may not reach."""


def resolve_public(host: str, port: int, allowed: tuple[str, ...]) -> list[str] | None:
    """The addresses `host` resolves to, every one global or in an allowed network; None when the host
    itself is allowed (not resolved). PrivateAddress for any other address; socket.gaierror when the name
    does not resolve."""
    if host in allowed:
        return None
    infos = socket.getaddrinfo(host, port)
    networks = [ipaddress.ip_network(item, strict=False) for item in allowed if _is_network(item)]
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if any(address in network for network in networks):
            continue
        # Not global: private, loopback, link-local, reserved, unspecified, and shared (carrier-grade NAT,
        # 100.64.0.0/10), which `is_private` misses.
        if not address.is_global or address.is_multicast:
            raise PrivateAddress(
                f"{host} resolves to {address}, a private address: refused (allow-list it in "
                "ORCHESTRATOR_HTTP_ALLOWED_HOSTS)"
            )
    return [str(info[4][0]) for info in infos]


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True
