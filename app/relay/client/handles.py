"""Resumption handles as clients see them: the relay's own, opaque and bound to their tenant.

Every tenant reaches the upstream with the relay's one Vertex identity, so Vertex cannot tell
tenants apart: a raw upstream handle is a capability any client could replay to continue
another tenant's conversation. Clients therefore never see one. Each `newHandle` the upstream
sends a client is sealed (AES-256-GCM) together with what it is bound to:

- the project,
- the owner: the user, scoped by whoever vouches for it (a JWT issuer, a Firebase project, a
  session token's issuer), or without a user the credential itself (an API key's fingerprint,
  a session token's id),
- the session token's id, when a session token started the session,
- an expiry: two hours (the service's own figure), never past the session token's expiry.

A handle in a setup is opened again and must match the principal presenting it; `?resume=1`
(a session token spending no use) further needs the very token that started the session.
Anything else (another tenant's handle, a forged, altered or expired one) is refused exactly
like a handle the upstream does not know: 1008 "BidiGenerateContent session not found", and
nothing reaches the upstream. The relay's own transparent resumption (resumable_upstream.py)
works on the upstream's handles, which never leave the relay.

The key is derived from `RELAY_TOKEN_SIGNING_KEY`, so handles work on every replica and across
restarts; without one, a random key makes them valid on this process only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app import bounded_json
from app.auth.principal import Principal
from app.protocol.errors import ProtocolViolation
from app.relay.client.setup_policy import AcceptedSetup
from app.relay.closes import POLICY_VIOLATION
from app.relay.fast_lane import Lane, LaneOver, lane_of
from app.relay.upstream.upstream_leg import UpstreamLeg
from app.settings import Settings

logger = logging.getLogger(__name__)

HANDLE_TTL_SECONDS = 2 * 3600.0
"""How long a handle given to a client can be resumed: what the service says of its own."""

NOT_FOUND = "BidiGenerateContent session not found"
"""The reason of every refused handle: the upstream's own words for a handle it does not know,
so a refusal says nothing about whose handle it was."""

RESUME_NEEDS_HANDLE = "?resume=1 resumes a session: send setup.sessionResumption.handle"

_PREFIX = "lrh1."  # a version, so a later format can be told apart
_NONCE_BYTES = 12
_AAD = b"live-relay resumption handle v1"
_KEY_LABEL = b"live-relay resumption handles v1"
_UPDATE_KEY = "sessionResumptionUpdate"
_UPDATE_KEY_TEXT = '"sessionResumptionUpdate"'
_UPDATE_KEY_BYTES = _UPDATE_KEY_TEXT.encode()
_MAX_HANDLE_CHARS = 8192  # longer than any sealed handle of a real upstream handle


@dataclass(frozen=True)
class _Binding:
    project: str
    owner: str
    token_id: str | None


def owner_of(principal: Principal) -> str:
    """Whose handles these are within a project: the scoped user, else the credential."""
    user = principal.quota_user()
    if user is not None:
        return "user:" + user
    return f"{principal.method}:{principal.credential_id}"


def _binding(principal: Principal) -> _Binding:
    token_id = principal.credential_id if principal.method == "session_token" else None
    return _Binding(principal.project.name, owner_of(principal), token_id)


class ResumptionHandles:
    """Seals upstream handles for one principal's client and opens them again (module doc)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(hmac.new(key, _KEY_LABEL, hashlib.sha256).digest())

    @classmethod
    def from_settings(cls, settings: Settings) -> ResumptionHandles:
        if settings.token_signing_key is None:
            # The authenticator already warns that the signing key is missing.
            return cls(os.urandom(32))
        return cls(settings.token_signing_key.get_secret_value().encode())

    def seal(self, upstream_handle: str, principal: Principal) -> str:
        """The handle `principal`'s client gets for `upstream_handle`."""
        binding = _binding(principal)
        expires = time.time() + HANDLE_TTL_SECONDS
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        plain = json.dumps(
            [upstream_handle, binding.project, binding.owner, binding.token_id, int(expires)],
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plain, _AAD)
        return _PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, client_handle: str, principal: Principal) -> str | None:
        """The upstream handle behind `client_handle` if `principal` may resume it, else None."""
        if not client_handle.startswith(_PREFIX) or len(client_handle) > _MAX_HANDLE_CHARS:
            return None
        body = client_handle.removeprefix(_PREFIX)
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _AAD)
            upstream, project, owner, token_id, expires = json.loads(plain)
        except (binascii.Error, InvalidTag, ValueError, TypeError):
            return None
        if time.time() >= expires:
            return None
        wanted = _binding(principal)
        if (project, owner) != (wanted.project, wanted.owner):
            return None
        if principal.resume_only and (token_id is None or token_id != wanted.token_id):
            # `?resume=1` spends no use: it continues only what this very token started.
            return None
        return str(upstream)

    # --- the setup ------------------------------------------------------------------------

    def admit_setup(self, setup: AcceptedSetup, principal: Principal) -> AcceptedSetup:
        """The setup with the client's handle replaced by the upstream's (ProtocolViolation
        1008 "session not found" when it may not be resumed). The setup is canonical (one
        spelling, `sessionResumption` an object: `setup_policy.py`), so the field checked here
        is the only one the upstream can read. A `?resume=1` connection must name a non-empty
        handle."""
        frame = setup.frame
        probe = frame.encode() if isinstance(frame, str) else frame
        # The policy wrote the frame (json.dumps): field names are never escaped in it.
        if b'"sessionResumption"' not in probe:
            if principal.resume_only:
                raise ProtocolViolation(POLICY_VIOLATION, RESUME_NEEDS_HANDLE)
            return setup
        message: dict[str, Any] = json.loads(frame)
        body: dict[str, Any] = message["setup"]
        resumption: dict[str, Any] = dict(body["sessionResumption"])
        handle = resumption.pop("handle", None)
        if not handle:
            if principal.resume_only:
                raise ProtocolViolation(POLICY_VIOLATION, RESUME_NEEDS_HANDLE)
        else:
            resumption["handle"] = self._open_or_refuse(handle, principal)
        body["sessionResumption"] = resumption
        rewritten = json.dumps(message, separators=(",", ":"))
        return AcceptedSetup(
            frame=rewritten.encode() if isinstance(frame, bytes) else rewritten,
            model=setup.model,
        )

    def _open_or_refuse(self, handle: object, principal: Principal) -> str:
        upstream = self.open(handle, principal) if isinstance(handle, str) else None
        if upstream is None:
            logger.info("resumption handle refused")
            raise ProtocolViolation(POLICY_VIOLATION, NOT_FOUND)
        return upstream

    # --- updates to the client ------------------------------------------------------------

    def sealing_leg(self, upstream: UpstreamLeg, principal: Principal) -> UpstreamLeg:
        """`upstream` as the client may see it: every `newHandle` sealed for `principal`."""
        lane = lane_of(upstream)
        if lane is None:
            return _SealingLeg(upstream, self, principal)
        return _SealingLane(upstream, lane, self, principal)


class _SealingLeg:
    """An upstream leg whose `sessionResumptionUpdate` frames carry sealed handles. Only the
    sessions whose client asked for resumption get one: the others receive no updates."""

    __slots__ = ("_handles", "_principal", "_upstream")

    def __init__(
        self, upstream: UpstreamLeg, handles: ResumptionHandles, principal: Principal
    ) -> None:
        self._upstream = upstream
        self._handles = handles
        self._principal = principal

    async def send(self, message: str | bytes) -> None:
        await self._upstream.send(message)

    async def recv(self) -> str | bytes:
        while True:
            frame = await self._upstream.recv()
            # A whole-frame search (memchr-fast, as for usage): an update must never slip by.
            found = (
                _UPDATE_KEY_BYTES in frame
                if isinstance(frame, bytes)
                else _UPDATE_KEY_TEXT in frame
            )
            if not found:
                return frame
            sealed = self._sealed(frame)
            if sealed is not None:
                return sealed
            # Unreadable: dropping it is safer than passing an upstream handle on.

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._upstream.close(code, reason)

    def _sealed(self, frame: str | bytes) -> str | bytes | None:
        try:
            message = bounded_json.loads(frame)
        except bounded_json.JsonRejected:
            logger.warning("unreadable sessionResumptionUpdate from the upstream: dropped")
            return None
        if not isinstance(message, dict) or _UPDATE_KEY not in message:
            return frame  # the words appear, but not as the message's key: nothing to seal
        if not isinstance(message[_UPDATE_KEY], dict):
            return None
        update = dict(message[_UPDATE_KEY])
        handle = update.get("newHandle")
        if handle not in (None, ""):
            if not isinstance(handle, str):
                return None
            update["newHandle"] = self._handles.seal(handle, self._principal)
        message = {**message, _UPDATE_KEY: update}
        text = json.dumps(message, separators=(",", ":"))
        return text.encode() if isinstance(frame, bytes) else text


class _SealingLane(_SealingLeg, LaneOver):
    """A sealing leg that keeps the wrapped leg's fast lane: a frame with an update declines
    it, so `recv` seals it."""

    __slots__ = ("_lane", "_sink")

    def __init__(
        self,
        upstream: UpstreamLeg,
        lane: Lane,
        handles: ResumptionHandles,
        principal: Principal,
    ) -> None:
        super().__init__(upstream, handles, principal)
        self._lane = lane
        self._sink = None

    def outgoing(self, message: str | bytes) -> str | bytes:
        return message  # sealing is of what comes back

    def declines(self, message: str | bytes) -> bool:
        # The same whole-frame search as `recv`'s: an update never takes the lane unsealed.
        if isinstance(message, bytes):
            return _UPDATE_KEY_BYTES in message
        return _UPDATE_KEY_TEXT in message
