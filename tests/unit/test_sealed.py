"""Secrets sealed with the operator's key: opened only with that key, clear text read as it
was stored before sealing existed, and a key that is not one refused when settings load."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from propylon.sealed import SealedSecretError, SecretsKey, is_sealed, open_secret
from propylon.settings import load_settings

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER = base64.b64encode(bytes(range(1, 33))).decode()
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_a_sealed_secret_opens_with_its_key_and_shows_nothing_of_itself() -> None:
    key = SecretsKey.from_text(KEY)
    sealed = key.seal(SECRET)
    assert is_sealed(sealed) and SECRET not in sealed and key.key_id in sealed
    assert key.seal(SECRET) != sealed  # a fresh nonce each time
    assert key.open(sealed) == SECRET
    assert open_secret(sealed, key, "rag.sources.secrets_key") == SECRET
    assert KEY not in repr(key)


def test_a_secret_stored_in_clear_before_sealing_is_read_as_it_is() -> None:
    assert SecretsKey.from_text(KEY).open(SECRET) == SECRET
    assert open_secret(SECRET, None, "rag.sources.secrets_key") == SECRET
    assert open_secret(None, None, "rag.sources.secrets_key") is None


def test_no_key_another_key_or_damaged_text_is_said_so() -> None:
    sealed = SecretsKey.from_text(KEY).seal(SECRET)
    with pytest.raises(SealedSecretError, match=r"set `rag\.sources\.secrets_key`"):
        open_secret(sealed, None, "rag.sources.secrets_key")
    with pytest.raises(SealedSecretError, match="another key"):
        SecretsKey.from_text(OTHER).open(sealed)
    damaged = sealed[:-6] + ("AAAA==" if not sealed.endswith("AAAA==") else "BBBB==")
    with pytest.raises(SealedSecretError, match="damaged"):
        SecretsKey.from_text(KEY).open(damaged)


@pytest.mark.parametrize(
    ("value", "says"),
    [("not base64!", "not base64"), (base64.b64encode(b"short").decode(), "5 bytes, not 32")],
)
def test_a_key_that_is_not_one_is_refused_when_settings_load(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        load_settings(None, rag={"sources": {"secrets_key": value}})
    settings = load_settings(None, rag={"sources": {"secrets_key": KEY}})
    assert settings.rag.sources.secrets_key is not None
