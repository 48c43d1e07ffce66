"""Encryption at rest for the gateway database's personal columns.

Channel addresses (chat ids, phone numbers), message text and payloads, case cards and counsellors'
notes are stored as Fernet tokens (AES-128-CBC with HMAC-SHA256, from the `cryptography` package).
The keys come from `DATA_KEYS`: one or more secrets, comma-separated, newest first. The first one
encrypts; every one of them decrypts, so a key can be rotated without downtime (docs/security.md):

1. put a new secret in front: `DATA_KEYS=<new>,<old>` and restart;
2. `python -m bot privacy rotate-key` re-encrypts every stored value with the new key;
3. remove the old secret and restart.

Each secret is stretched to a Fernet key with SHA-256, so any random string of 32+ characters works
(`python -m bot run` writes one to `.env`). An empty string is stored as it is (it says nothing).
A value that is not a Fernet token is read as it is: rows written before encryption existed, which
`Database.upgrade()` encrypts once.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Iterable, List, Optional

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.types import Text, TypeDecorator

from bot.errors import ConfigError

TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts with the version byte 0x80 and a timestamp
MIN_SECRET_CHARS = 32


def fernet_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode("utf-8")).digest())


class Keyring:
    """The data keys, newest first."""

    def __init__(self, secrets: Iterable[str]) -> None:
        secrets = [s.strip() for s in secrets if s and s.strip()]
        if not secrets:
            raise ConfigError("DATA_KEYS is empty: set at least one secret of 32+ characters")
        short = [i + 1 for i, s in enumerate(secrets) if len(s) < MIN_SECRET_CHARS]
        if short:
            raise ConfigError(f"DATA_KEYS: key(s) {short} shorter than {MIN_SECRET_CHARS} characters")
        self._fernets = [Fernet(fernet_key(s)) for s in secrets]
        self._multi = MultiFernet(self._fernets)
        self.count = len(secrets)

    @classmethod
    def parse(cls, value: str) -> "Keyring":
        return cls(value.split(","))

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str) -> str:
        try:
            return self._multi.decrypt(stored.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise ConfigError("a stored value cannot be decrypted with DATA_KEYS (a key was removed too early?)") \
                from exc

    def current(self, stored: str) -> bool:
        """True when `stored` is a token made with the newest key."""
        try:
            self._fernets[0].decrypt(stored.encode("ascii"))
            return True
        except (InvalidToken, UnicodeEncodeError):
            return False

    def rotate(self, stored: str) -> str:
        return self._multi.rotate(stored.encode("ascii")).decode("ascii")


_active: List[Optional[Keyring]] = [None]


def configure(keyring: Keyring) -> None:
    """Make `keyring` the one the encrypted columns use in this process."""
    _active[0] = keyring


def active() -> Keyring:
    keyring = _active[0]
    if keyring is None:
        raise ConfigError("encrypted columns used before DATA_KEYS was configured (Database(url, keys=...))")
    return keyring


def is_token(value: Optional[str]) -> bool:
    return bool(value) and value.startswith(TOKEN_PREFIX)


class EncryptedText(TypeDecorator):
    """A text column stored encrypted; reads and writes plain `str` in Python."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or value == "":
            return value
        return active().encrypt(str(value))

    def process_result_value(self, value, dialect):
        if value is None or value == "" or not is_token(value):
            return value
        return active().decrypt(value)
