"""Keys: random, checkable without a lookup, stored only as a hash."""

from __future__ import annotations

import hashlib

from propylon.access.keys import (
    KEY_LENGTH,
    display_prefix,
    generate_key,
    hash_key,
    looks_like_key,
)


def test_keys_are_random_and_well_formed() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("ppl_")
        assert len(key) == KEY_LENGTH
        assert looks_like_key(key)


def test_a_typo_or_a_random_string_is_not_a_key() -> None:
    key = generate_key()
    typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not looks_like_key(typo)
    assert not looks_like_key("sk-" + "x" * 47)
    assert not looks_like_key("")
    assert not looks_like_key(key + "x")


def test_only_the_hash_and_a_short_prefix_are_kept() -> None:
    key = generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).digest()
    assert display_prefix(key) == key[:12]
    # 8 random characters are shown; 32 (192 bits) stay secret.
    assert key.removeprefix(display_prefix(key))[:32] not in display_prefix(key)
    assert len(key) - len(display_prefix(key)) == 38
