"""Whether the server may call a host a tenant named: one that resolves to a loopback, private,
link-local or otherwise non-public address (the machine itself, an intranet, a cloud's metadata
service) only when the operator allowed that host by name, or allowed any with ``*``.

Every URL a tenant gives the server to call goes through here (``url`` and ``s3`` sources, MCP
servers): a literal address is checked when the URL is given, a name is resolved and checked
before every connection, so a name that later resolves elsewhere is caught at its next use.
Each caller turns the refusal into its own error, naming its own setting.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Collection


class PrivateAddress(Exception):
    """The host is, or resolves to, a non-public address the operator did not allow."""

    def __init__(self, host: str) -> None:
        super().__init__(f"`{host}` resolves to a non-public address")
        self.host = host


class Unresolvable(Exception):
    """The host's name could not be resolved."""

    def __init__(self, host: str, cause: OSError) -> None:
        super().__init__(f"`{host}` cannot be resolved: {cause}")
        self.host = host


def allowed(host: str, hosts: Collection[str]) -> bool:
    return "*" in hosts or host in hosts


def check_literal(host: str, hosts: Collection[str]) -> None:
    """``PrivateAddress`` when ``host`` is an address (not a name) that is not public and not
    allowed; a name passes (it is resolved when it is called)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not address.is_global and not allowed(host, hosts):
        raise PrivateAddress(host)


async def check_resolved(host: str, port: int, hosts: Collection[str]) -> None:
    """``PrivateAddress`` when any address ``host`` resolves to is not public and the host is
    not allowed; ``Unresolvable`` when it does not resolve."""
    if allowed(host, hosts):
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError as exc:
        raise Unresolvable(host, exc) from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            raise PrivateAddress(host)
