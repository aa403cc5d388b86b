"""Which hosts a tenant may make the server call: public ones, and those the operator allowed."""

from __future__ import annotations

import pytest

from propylon.private_addresses import (
    PrivateAddress,
    Unresolvable,
    check_literal,
    check_resolved,
)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
    ],
)
def test_an_address_that_is_not_public_is_refused_unless_allowed(host: str) -> None:
    with pytest.raises(PrivateAddress, match="non-public"):
        check_literal(host, ())
    check_literal(host, (host,))
    check_literal(host, ("*",))


def test_a_public_address_and_a_name_pass_the_literal_check() -> None:
    check_literal("93.184.215.14", ())
    check_literal("example.invalid", ())  # a name is resolved when it is called


async def test_a_name_is_judged_by_what_it_resolves_to() -> None:
    with pytest.raises(PrivateAddress, match="`localhost`"):
        await check_resolved("localhost", 80, ())
    await check_resolved("localhost", 80, ("localhost",))
    await check_resolved("localhost", 80, ("*",))


async def test_a_name_that_does_not_resolve_says_so() -> None:
    with pytest.raises(Unresolvable, match="cannot be resolved"):
        await check_resolved("nowhere.invalid", 80, ())
