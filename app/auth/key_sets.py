"""Signing keys published by someone else (a JWKS, Google's certificates), fetched and cached.

Keys are fetched on first use, kept for a while, and fetched again when a token names a key id
the cache does not know (keys rotate). Fetches are rate-limited (`FetchPolicy`) whatever the
tokens say, so a client sending random key ids cannot turn the relay into a traffic generator
against an identity provider. One fetch at a time: requests that arrive during a fetch wait for
it instead of starting their own.

Fetches run urllib in a thread, so the event loop never blocks on the network. A failed fetch
keeps the keys already known; with none known, `KeysUnavailable` is raised (the client gets a
503 and may retry, since its credential was not judged).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import jwt

from app import bounded_json

logger = logging.getLogger(__name__)

Key = TypeVar("Key")
MAX_DOCUMENT_BYTES = 1024 * 1024
_ACCEPT_JSON = {"Accept": "application/json"}
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}


@dataclass(frozen=True)
class FetchPolicy:
    """How often and how patiently a key source is fetched."""

    min_refetch_seconds: float = 10.0  # never two fetches of one source closer than this
    max_age_seconds: float = 3600.0  # keys older than this are fetched again before use
    timeout_seconds: float = 5.0


class KeysUnavailable(Exception):
    """No signing keys could be loaded from the source (never fetched, or every fetch failed)."""


class KeySetCache(Generic[Key]):
    """Keys by key id from one source: an http(s) URL, or a local file path."""

    def __init__(
        self,
        source: str,
        parse: Callable[[Any], Mapping[str, Key]],
        policy: FetchPolicy,
    ) -> None:
        self.source = source
        self._parse = parse
        self._policy = policy
        self._keys: Mapping[str, Key] | None = None
        self._loaded_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> Key | None:
        """The key named `kid` (None: the only key, if there is exactly one), or None if unknown."""
        if not self._is_fresh() or self._lookup(kid) is None:
            await self._refresh()
        if self._keys is None:
            raise KeysUnavailable(f"no signing keys could be loaded from {self.source}")
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> Key | None:
        if self._keys is None:
            return None
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _is_fresh(self) -> bool:
        return (
            self._keys is not None
            and time.monotonic() - self._loaded_at < self._policy.max_age_seconds
        )

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None
            or time.monotonic() - self._attempted_at >= self._policy.min_refetch_seconds
        )

    async def _refresh(self) -> None:
        # Requests queue here while a fetch is in flight, then find it done and use its keys.
        async with self._lock:
            if not self._may_fetch():
                return
            self._attempted_at = time.monotonic()
            try:
                document = await asyncio.to_thread(self._read)
                keys = self._parse(document)
            except (OSError, ValueError, TypeError, jwt.PyJWTError) as exc:
                logger.warning(
                    "could not load signing keys from %s (%s); keeping %d known keys",
                    self.source,
                    type(exc).__name__,
                    len(self._keys or {}),
                )
                return
            self._keys = keys
            self._loaded_at = time.monotonic()

    def _read(self) -> Any:
        if self.source.startswith(("https://", "http://")):
            # The URL comes from the operator's configuration, never from a token (`jku` and
            # `x5u` headers are ignored), and its scheme is checked above.
            request = urllib.request.Request(self.source, headers=_ACCEPT_JSON)  # noqa: S310
            timeout = self._policy.timeout_seconds
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body: bytes = response.read(MAX_DOCUMENT_BYTES + 1)
        else:
            body = Path(self.source).read_bytes()
        return bounded_json.loads(body, max_bytes=MAX_DOCUMENT_BYTES)


def parse_jwks(algorithm: str) -> Callable[[Any], Mapping[str, jwt.PyJWK]]:
    """A parser for a JWKS document that keeps only the keys usable with `algorithm`.

    Binding every key to the issuer's pinned algorithm is what stops algorithm confusion: a
    token whose header names another algorithm does not verify against any of them.
    """

    def parse(document: Any) -> Mapping[str, jwt.PyJWK]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise TypeError('a JWKS is a JSON object with a "keys" list')
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if (
                entry.get("alg", algorithm) != algorithm
                or entry.get("kty") != _KEY_TYPES[algorithm]
            ):
                continue
            if algorithm == "ES256" and entry.get("crv") != "P-256":
                continue
            try:
                key = jwt.PyJWK(entry, algorithm=algorithm)
            except jwt.PyJWTError:
                continue  # a key of another type, or one we cannot use: not ours to verify with
            keys[str(entry.get("kid", ""))] = key
        if not keys:
            raise ValueError(f"the JWKS holds no {algorithm} signing key")
        return keys

    return parse


def parse_x509_certificates(document: Any) -> Mapping[str, str]:
    """Google's `{"<kid>": "<PEM certificate>", ...}` document (Firebase ID token signers)."""
    if not isinstance(document, dict) or not document:
        raise TypeError("expected a JSON object of key id -> PEM certificate")
    if not all(isinstance(kid, str) and isinstance(pem, str) for kid, pem in document.items()):
        raise ValueError("expected a JSON object of key id -> PEM certificate")
    return dict(document)
