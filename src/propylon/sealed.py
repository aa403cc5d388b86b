"""Secrets kept in PostgreSQL, sealed with a key the operator holds (AES-256-GCM).

Whoever reads the database (a dump, a replica, a backup) does not read a sealed secret: the
key lives in the processes' settings (``rag.sources.secrets_key``), never in the database.
A sealed value is text, ``sealed:v1:<key id>:<base64 of nonce, ciphertext and tag>``; the key
id (8 hex digits of the key's SHA-256) says which key sealed it, so a process given another key
says so instead of failing with an opaque authentication error. Text without the prefix is a
secret stored in clear before sealing existed: ``SecretsKey.open`` and ``open_secret`` return
it as it is, and the caller seals it again when it can (``is_sealed``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

PREFIX = "sealed:v1:"
_NONCE = 12
_AAD = b"propylon sealed secret v1"


class SealedSecretError(Exception):
    """A sealed secret cannot be opened here: no key, another key, or damaged text."""


def parse_key(text: str) -> bytes:
    """The 32 bytes of a key written in base64 (standard or URL-safe, as
    ``openssl rand -base64 32`` writes one); ``ValueError`` saying what is wrong."""
    raw = text.strip()
    try:
        key = base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64; generate a key with `openssl rand -base64 32`") from None
    if len(key) != 32:
        raise ValueError(
            f"decodes to {len(key)} bytes, not 32; generate a key with `openssl rand -base64 32`"
        )
    return key


class SecretsKey:
    """Seals and opens secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        # cryptography is imported when a key is set, not with the settings that check it.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise ValueError("an AES-256 key is 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    @classmethod
    def from_text(cls, text: str) -> SecretsKey:
        return cls(parse_key(text))

    def __repr__(self) -> str:  # never the key, whatever logs this object
        return f"SecretsKey(key_id={self.key_id!r})"

    def seal(self, secret: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, secret.encode(), _AAD)
        return f"{PREFIX}{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, stored: str) -> str:
        """The secret of ``stored``: sealed, opened with this key; in clear, as it is."""
        if not is_sealed(stored):
            return stored
        from cryptography.exceptions import InvalidTag

        key_id, _, body = stored.removeprefix(PREFIX).partition(":")
        if key_id != self.key_id:
            raise SealedSecretError(
                f"The secret was sealed with another key (id {key_id}) than this process's "
                f"(id {self.key_id}); set the key it was sealed with."
            )
        try:
            raw = base64.b64decode(body, validate=True)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SealedSecretError("The sealed secret is damaged and cannot be opened.") from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def open_secret(stored: str | None, key: SecretsKey | None, setting: str) -> str | None:
    """The secret of a stored value (``None`` stays ``None``); a sealed one without a key is a
    ``SealedSecretError`` naming ``setting``."""
    if stored is None:
        return None
    if key is None:
        if is_sealed(stored):
            raise SealedSecretError(
                f"The secret is sealed, and this process has no key to open it: set "
                f"`{setting}` to the key it was sealed with."
            )
        return stored
    return key.open(stored)
