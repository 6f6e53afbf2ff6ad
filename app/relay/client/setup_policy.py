"""The client's first frame, `setup`: read it, rewrite the model, apply defaults and locks.

The Live API parses proto-JSON, so every field may arrive camelCase or snake_case at any depth.
The setup is read into its canonical form first (`app.protocol.canonical`: camelCase, a field
named twice refused), the policy works on that, and that is what goes upstream: the upstream
never sees two spellings of one field, and no lock can be passed by spelling a field the
other way. Later frames are the business of `client_frames.py`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app import bounded_json
from app.auth.setup_locks import SETUP, bare_model_name, merge_locked
from app.protocol.canonical import canonical
from app.protocol.errors import ProtocolViolation
from app.relay.closes import INVALID_PAYLOAD, POLICY_VIOLATION
from app.relay.upstream.target import UpstreamTarget

_MODEL_PATH = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/google/models/(?P<model>[^/]+)$"
)


@dataclass(frozen=True)
class SetupPolicy:
    """What a principal's session may ask for. Field mappings are canonical (camelCase)."""

    allowed_models: tuple[str, ...]
    allowed_by: str  # the setting that lists them, named when a model is refused
    locked: Mapping[str, Any]  # the project's: a client value that differs is refused (1008)
    forced: Mapping[str, Any]  # the session token's: written over whatever the client sent
    defaults: Mapping[str, Any] = field(default_factory=dict)  # used when the client sent none
    # Fields and messages the protocol model does not know: forwarded as sent, else 1007.
    keep_unknown: bool = False

    def session_locks(self) -> dict[str, Any]:
        """Every setup field locked for the session, by the token or the project: what later
        messages (a `contextUpdate`) may not change either."""
        locks = copy.deepcopy(dict(self.forced))
        merge_locked(locks, self.locked, force=True)
        return locks


@dataclass(frozen=True)
class AcceptedSetup:
    frame: str | bytes  # the rewritten setup, as text or binary like the client's frame
    model: str  # the bare model id, for logs and metrics


def parse_setup_frame(frame: str | bytes) -> dict[str, Any]:
    """The `setup` object of a client's first frame, as sent, or ProtocolViolation(1007)."""
    try:
        message = bounded_json.loads(frame)
    except bounded_json.JsonRejected as rejected:
        reason = "first frame is not JSON: send a setup message"
        if not rejected.malformed:
            reason = f"setup refused: {rejected}"
        raise ProtocolViolation(INVALID_PAYLOAD, reason) from None
    if not isinstance(message, dict) or list(message) != ["setup"]:
        raise ProtocolViolation(
            INVALID_PAYLOAD, 'first frame must be {"setup": {...}} and nothing else'
        )
    setup = message["setup"]
    if not isinstance(setup, dict):
        raise ProtocolViolation(INVALID_PAYLOAD, "setup must be a JSON object")
    return setup


def resolve_model(
    requested: object, target: UpstreamTarget, allowed: tuple[str, ...], allowed_by: str
) -> str:
    """Accept `M`, `models/M`, `publishers/google/models/M` or the full path; return bare `M`.
    A refusal lists the models `allowed` and names `allowed_by`, the setting that lists them."""
    if not isinstance(requested, str) or not requested.strip():
        raise ProtocolViolation(INVALID_PAYLOAD, "setup.model is required")
    name = requested.strip()
    full = _MODEL_PATH.match(name)
    if full:
        if (full["project"], full["location"]) != (target.project, target.location):
            raise ProtocolViolation(
                POLICY_VIOLATION,
                f'model "{name}" names another project or location; use "{full["model"]}"',
            )
        model = full["model"]
    else:
        model = name.removeprefix("publishers/google/").removeprefix("models/")
    if "/" in model or model not in allowed:
        raise ProtocolViolation(
            POLICY_VIOLATION,
            # The setting first: a long list is what a cut reason loses.
            f'model "{model}" is not allowed ({allowed_by}): {", ".join(allowed)}',
        )
    return model


def apply_setup_policy(
    frame: str | bytes, policy: SetupPolicy, target: UpstreamTarget
) -> AcceptedSetup:
    """Check a client's first frame against `policy`; return what goes upstream.

    The token's fields are written first and the project's locks checked last, against the
    projects file in force now: a lock the project gained after the token was minted holds,
    and a token that contradicts it is refused rather than obeyed."""
    setup = canonical(
        parse_setup_frame(frame), SETUP, path=("setup",), keep_unknown=policy.keep_unknown
    )
    if "model" in policy.forced:
        setup["model"] = policy.forced["model"]
    model = resolve_model(setup.get("model"), target, policy.allowed_models, policy.allowed_by)
    if "model" in policy.locked and model != bare_model_name(str(policy.locked["model"])):
        raise ProtocolViolation(POLICY_VIOLATION, 'setup field "model" is locked for this project')
    for key, value in policy.defaults.items():
        # A default stands in for a field the client left out; a field it sent is its choice.
        if key not in setup:
            setup[key] = copy.deepcopy(value)  # locks merge into it: keep the project's intact
    merge_locked(setup, {k: v for k, v in policy.forced.items() if k != "model"}, force=True)
    merge_locked(setup, {k: v for k, v in policy.locked.items() if k != "model"}, force=False)
    setup["model"] = target.model_path(model)
    rewritten = json.dumps({"setup": setup}, separators=(",", ":"))
    return AcceptedSetup(
        frame=rewritten.encode() if isinstance(frame, bytes) else rewritten, model=model
    )
