"""Secrets never reach the request log."""

from __future__ import annotations

import pytest

from propylon.observe.redaction import REDACTED, redact


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "sk-ant-api03-abcdefghijklmnopqrstuv",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdefghij",
        "AKIAABCDEFGHIJKLMNOP",
        "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ],
)
def test_known_key_formats_are_replaced(secret: str) -> None:
    assert redact(f"use {secret} here") == f"use {REDACTED} here"


def test_bearer_tokens_and_assigned_secrets_keep_their_names() -> None:
    text = (
        'Authorization: Bearer abcdefghijklmnopqrstuvwxyz and password=hunter22 "api_key": '
        '"z1z2z3z4"'
    )
    assert redact(text) == (
        f'Authorization: {REDACTED} and password={REDACTED} "api_key": "{REDACTED}"'
    )


def test_ordinary_text_is_left_alone() -> None:
    text = "The task: ask the model for a summary of skiing in the Alps (sk-1 is a ski run)."
    assert redact(text) == text
