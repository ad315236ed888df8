"""Encryption at rest for blocks: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from `LEDGERFLOW_SECRET_KEY` (several keys separated by commas rotate them: the
first encrypts, every one decrypts); unset, a key is generated on first use into
`$LEDGERFLOW_HOME/secret.key`, readable by its owner only. Every process that reads blocks
(the server, a worker, flow code calling `SlackWebhook.load`) must have the same key.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ledgerflow.events.settings import Settings
from ledgerflow.notifications.errors import SecretKeyError

__all__ = ["KEY_FILE", "SecretBox", "load_keys"]

KEY_FILE = "secret.key"
_log = logging.getLogger("ledgerflow.notifications")
_HOW = 'generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretBox:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        fernets = []
        for key in keys:
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"the secret key is not a Fernet key (32 url-safe base64-encoded bytes); {_HOW}"
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        return cls(load_keys(secret, settings.home))

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, token: str, what: str = "a block") -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise SecretKeyError(
                f"{what} cannot be decrypted with this secret key: it was stored under another "
                "LEDGERFLOW_SECRET_KEY (or another $LEDGERFLOW_HOME/secret.key)"
            ) from None


def load_keys(secret_key: str | None, home: Path) -> list[bytes]:
    """The keys from `secret_key` (comma-separated), else from the home's key file, made if needed."""
    if secret_key and secret_key.strip():
        return [part.strip().encode() for part in secret_key.split(",") if part.strip()]
    return [_key_file(home / KEY_FILE)]


def _key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "wb") as file:
        file.write(Fernet.generate_key() + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    # Another process may have created the file and not written it yet: give it a moment.
    for _ in range(50):
        key = path.read_bytes().strip()
        if key:
            break
        time.sleep(0.01)
    else:
        raise SecretKeyError(f"{path} is empty; delete it, or set LEDGERFLOW_SECRET_KEY")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        _log.warning("%s is readable by others (mode %o): chmod 600 it", path, mode)
    return key
