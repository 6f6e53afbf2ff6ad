"""Project API keys: how they are made, and the only form in which the relay stores them.

Keys are 256 random bits, not passwords, so one SHA-256 is a sufficient hash: nothing can be
guessed from it, and no slow hash (bcrypt, scrypt) is needed to resist brute force.
"""

from __future__ import annotations

import hashlib
import re
import secrets

API_KEY_PREFIX = "lr_"
HASH_PREFIX = "sha256:"
_HASH_FORMAT = re.compile(r"^sha256:[0-9a-f]{64}$")


def generate_api_key() -> str:
    """A new key: `lr_` and 43 URL-safe characters (32 random bytes)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """`sha256:<hex>`, the form a key takes in the projects file."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_api_key(credential: str) -> bool:
    """Whether a presented credential has the shape of a relay API key (rather than a JWT)."""
    return credential.startswith(API_KEY_PREFIX)


def check_key_hash(text: str) -> str:
    """`text` if it is a well-formed `sha256:<64 hex>` line, else ValueError naming the fix."""
    if not _HASH_FORMAT.match(text):
        raise ValueError(
            "API keys are stored as 'sha256:<64 lowercase hex digits>'; "
            "make one with `live-relay keys create --project NAME`"
        )
    return text
