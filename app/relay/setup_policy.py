"""The one client frame the relay reads: `setup`. Validate it, rewrite the model, apply locks.

The Live API parses proto-JSON, so every field may arrive camelCase or snake_case at any depth.
Locked and forced fields are written camelCase and their snake_case twin is removed, so the
upstream never sees two spellings of one field.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app import bounded_json
from app.auth.setup_locks import bare_model_name
from app.relay.closes import INVALID_PAYLOAD, POLICY_VIOLATION

_MODEL_PATH = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/google/models/(?P<model>[^/]+)$"
)
_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


class SetupRejected(Exception):
    """The setup frame cannot go upstream; `code` and `reason` go into the client's close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class UpstreamTarget:
    """Where models live upstream: `projects/{project}/locations/{location}`."""

    project: str
    location: str

    def model_path(self, model: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/publishers/google/models/{model}"


@dataclass(frozen=True)
class SetupPolicy:
    """What a principal's session may ask for."""

    allowed_models: tuple[str, ...]
    locked: Mapping[str, Any]  # a client value that differs is refused; a missing one is filled in
    forced: Mapping[str, Any]  # written over whatever the client sent
    defaults: Mapping[str, Any] = field(default_factory=dict)  # used when the client sent none


@dataclass(frozen=True)
class AcceptedSetup:
    frame: str | bytes  # the rewritten setup, as text or binary like the client's frame
    model: str  # the bare model id, for logs and metrics


def snake_case(name: str) -> str:
    return _CAMEL_HUMP.sub("_", name).lower()


def parse_setup_frame(frame: str | bytes) -> dict[str, Any]:
    """The `setup` object of a client's first frame, or SetupRejected(1007)."""
    try:
        message = bounded_json.loads(frame)
    except bounded_json.JsonRejected as rejected:
        reason = "first frame is not JSON: send a setup message"
        if not rejected.malformed:
            reason = f"setup refused: {rejected}"
        raise SetupRejected(INVALID_PAYLOAD, reason) from None
    if not isinstance(message, dict) or list(message) != ["setup"]:
        raise SetupRejected(
            INVALID_PAYLOAD, 'first frame must be {"setup": {...}} and nothing else'
        )
    setup = message["setup"]
    if not isinstance(setup, dict):
        raise SetupRejected(INVALID_PAYLOAD, "setup must be a JSON object")
    return setup


def resolve_model(requested: object, target: UpstreamTarget, allowed: tuple[str, ...]) -> str:
    """Accept `M`, `models/M`, `publishers/google/models/M` or the full path; return bare `M`."""
    if not isinstance(requested, str) or not requested.strip():
        raise SetupRejected(INVALID_PAYLOAD, "setup.model is required")
    name = requested.strip()
    full = _MODEL_PATH.match(name)
    if full:
        if (full["project"], full["location"]) != (target.project, target.location):
            raise SetupRejected(
                POLICY_VIOLATION,
                f'model "{name}" names another project or location; use "{full["model"]}"',
            )
        model = full["model"]
    else:
        model = name.removeprefix("publishers/google/").removeprefix("models/")
    if "/" in model or model not in allowed:
        raise SetupRejected(POLICY_VIOLATION, f'model "{model}" is not allowed here')
    return model


def _merge(
    setup: dict[str, Any], wanted: Mapping[str, Any], *, force: bool, path: str = ""
) -> None:
    for key, value in wanted.items():
        snake = snake_case(key)
        spelled = key if key in setup else snake if snake in setup else None
        current = setup.pop(spelled) if spelled is not None else None
        here = f"{path}.{key}" if path else key
        if isinstance(value, Mapping) and (current is None or isinstance(current, dict)):
            merged: dict[str, Any] = current if current is not None else {}
            _merge(merged, value, force=force, path=here)
            setup[key] = merged
            continue
        if not force and current is not None and current != value:
            raise SetupRejected(
                POLICY_VIOLATION, f'setup field "{here}" is locked for this project'
            )
        setup[key] = value


def apply_setup_policy(
    frame: str | bytes, policy: SetupPolicy, target: UpstreamTarget
) -> AcceptedSetup:
    """Check a client's first frame against `policy`; return what goes upstream."""
    setup = parse_setup_frame(frame)
    if "model" in policy.forced:
        setup["model"] = policy.forced["model"]
    model = resolve_model(setup.get("model"), target, policy.allowed_models)
    if "model" in policy.locked and model != bare_model_name(str(policy.locked["model"])):
        raise SetupRejected(POLICY_VIOLATION, 'setup field "model" is locked for this project')
    for key, value in policy.defaults.items():
        # A default stands in for a field the client left out; a field it sent is its choice.
        if key not in setup and snake_case(key) not in setup:
            setup[key] = copy.deepcopy(value)  # locks merge into it: keep the project's intact
    _merge(setup, {k: v for k, v in policy.locked.items() if k != "model"}, force=False)
    _merge(setup, {k: v for k, v in policy.forced.items() if k != "model"}, force=True)
    setup["model"] = target.model_path(model)
    rewritten = json.dumps({"setup": setup}, separators=(",", ":"))
    return AcceptedSetup(
        frame=rewritten.encode() if isinstance(frame, bytes) else rewritten, model=model
    )
