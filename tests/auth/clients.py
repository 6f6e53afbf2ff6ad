"""Clients of the auth test server: a WebSocket handshake, and a token request."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.auth.servers import AuthServer


@dataclass(frozen=True)
class Handshake:
    """How a WebSocket handshake ended: 101 with the principal, or a refusal with its body."""

    status: int
    principal: dict[str, Any] | None = None
    subprotocol: str | None = None
    error: dict[str, Any] | None = None

    @property
    def message(self) -> str:
        assert self.error is not None, f"expected a refusal, got {self}"
        return str(self.error["message"])


async def handshake(
    server: AuthServer,
    *,
    query: str = "",
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] | None = None,
) -> Handshake:
    try:
        async with connect(
            server.ws_url + query,
            additional_headers=headers,
            subprotocols=[Subprotocol(s) for s in subprotocols] if subprotocols else None,
            open_timeout=5,
        ) as websocket:
            principal = json.loads(await websocket.recv())
            return Handshake(101, principal=principal, subprotocol=websocket.subprotocol)
    except InvalidStatus as refusal:
        body = json.loads(refusal.response.body or b"null")
        return Handshake(refusal.response.status_code, error=body and body["error"])


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def mint(
    server: AuthServer,
    headers: Mapping[str, str],
    body: Any = None,
) -> httpx.Response:
    """`POST /v1/tokens` with `body` as JSON (None: no body)."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as client:
        content = None if body is None else json.dumps(body).encode()
        return await client.post(
            "/v1/tokens", headers={**headers, "Content-Type": "application/json"}, content=content
        )


async def mint_token(server: AuthServer, headers: Mapping[str, str], body: Any = None) -> str:
    response = await mint(server, headers, body)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token
