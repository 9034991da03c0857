"""Values kept only to be sent once, sealed (authenticated encryption) while they wait.

A command that sets a station's password must keep the password until the station's socket
takes it, possibly in another process and after a restart; the rows people read hold only
its mask (`stations.secret_keys`). The sealed copy is Fernet (AES-128-CBC + HMAC-SHA256) under
a key derived from SECRET_KEY; SECRET_KEY_FALLBACKS still open what older keys sealed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

_CONTEXT = b"cpo.lib.sealing:"


class SealBroken(Exception):
    """The sealed value cannot be opened: SECRET_KEY changed, or the text was altered."""


def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(_CONTEXT + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _keys() -> MultiFernet:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(secret) for secret in secrets])


def seal(value: Any) -> str:
    """`value` (anything JSON can hold) as opaque text."""
    return _keys().encrypt(json.dumps(value).encode()).decode("ascii")


def unseal(text: str) -> Any:
    try:
        return json.loads(_keys().decrypt(text.encode("ascii")))
    except (InvalidToken, ValueError) as error:
        raise SealBroken("the sealed value cannot be opened") from error
