"""Keys: random, checkable without a lookup by this server only, stored only as a hash."""

from __future__ import annotations

import hashlib

from propylon.access.keys import (
    KEY_LENGTH,
    display_prefix,
    generate_key,
    has_valid_check,
    hash_key,
    looks_like_key,
    new_secret,
)

SECRET = new_secret()


def test_keys_are_random_and_well_formed() -> None:
    keys = {generate_key(SECRET) for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("ppl_")
        assert len(key) == KEY_LENGTH
        assert looks_like_key(key)
        assert has_valid_check(key, SECRET)


def test_a_typo_or_a_random_string_is_not_a_key() -> None:
    key = generate_key(SECRET)
    typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not has_valid_check(typo, SECRET)
    assert not looks_like_key("sk-" + "x" * 47)
    assert not looks_like_key("")
    assert not looks_like_key(key + "x")
    assert not has_valid_check("", SECRET)


def test_a_key_checked_under_another_secret_fails_the_check() -> None:
    """What an attacker can compute (the old unkeyed check, or any other secret) fails."""
    forged = generate_key(new_secret())
    assert looks_like_key(forged)
    assert not has_valid_check(forged, SECRET)
    body = forged[4:44]
    unkeyed = "ppl_" + body + hashlib.sha256(b"propylon-key:" + body.encode()).hexdigest()[:6]
    assert not has_valid_check(unkeyed, SECRET)


def test_only_the_hash_and_a_short_prefix_are_kept() -> None:
    key = generate_key(SECRET)
    assert hash_key(key) == hashlib.sha256(key.encode()).digest()
    assert display_prefix(key) == key[:12]
    # 8 random characters are shown; 32 (192 bits) stay secret.
    assert key.removeprefix(display_prefix(key))[:32] not in display_prefix(key)
    assert len(key) - len(display_prefix(key)) == 38
