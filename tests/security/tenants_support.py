"""What the tenant-isolation tests share: projects, replicas of `live-relay serve` in front of a
test-owned emulator and one real Redis, and raw Live API clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.auth.keys import hash_api_key
from app.emulator import Emulator
from tests.support.redis_server import RedisServer
from tests.support.relay import RelayProcess

MODEL = "gemini-live-2.5-flash"
SIGNING_KEY = "tenant-tests-signing-key-" + "s" * 32
TEXT_ONLY = {"responseModalities": ["TEXT"]}

ALPHA_KEY = "lr_alpha_" + "a" * 32
ALPHA_OTHER_KEY = "lr_alpha2_" + "b" * 32  # a second key of the same project
BETA_KEY = "lr_beta_" + "c" * 32
LEAN_KEY = "lr_lean_" + "d" * 32  # a project without the relay's own resumption
LEAN_OTHER_KEY = "lr_leanb_" + "e" * 32  # another project without it
CAPPED_KEY = "lr_capped_" + "f" * 32  # a project of two sessions, two per user

ISSUER_ONE = "https://one.example"
ISSUER_TWO = "https://two.example"
ISSUER_SECRET_ONE = "issuer-one-secret-" + "1" * 32
ISSUER_SECRET_TWO = "issuer-two-secret-" + "2" * 32
AUDIENCE = "live-relay"

PROJECTS = f"""
[projects.alpha]
api_keys = ["{hash_api_key(ALPHA_KEY)}", "{hash_api_key(ALPHA_OTHER_KEY)}"]

[projects.beta]
api_keys = ["{hash_api_key(BETA_KEY)}"]

[projects.lean]
api_keys = ["{hash_api_key(LEAN_KEY)}"]
resumption = false

[projects.leanb]
api_keys = ["{hash_api_key(LEAN_OTHER_KEY)}"]
resumption = false

[projects.capped]
api_keys = ["{hash_api_key(CAPPED_KEY)}"]

[projects.capped.quota]
max_sessions = 2
max_sessions_per_user = 1

[projects.capped.session_tokens]
max_uses = 5

[[projects.capped.issuers]]
issuer = "{ISSUER_ONE}"
audience = "{AUDIENCE}"
algorithm = "HS256"
secret = "{ISSUER_SECRET_ONE}"

[[projects.capped.issuers]]
issuer = "{ISSUER_TWO}"
audience = "{AUDIENCE}"
algorithm = "HS256"
secret = "{ISSUER_SECRET_TWO}"
"""


def issuer_jwt(issuer: str, secret: str, sub: str) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600}
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class Replicas:
    emulator: Emulator
    relays: list[RelayProcess]

    def url(self, index: int, query: str = "") -> str:
        return self.relays[index].url() + query

    def http(self, index: int) -> str:
        return f"http://127.0.0.1:{self.relays[index].port}"


def replica_env(
    emulator: Emulator, redis: RedisServer, projects: Path, **extra: str
) -> dict[str, str]:
    return {
        "RELAY_UPSTREAM": "emulator",
        "RELAY_EMULATOR_URL": emulator.base_url,
        "RELAY_REDIS_URL": redis.url,
        "RELAY_PROJECTS_FILE": str(projects),
        "RELAY_TOKEN_SIGNING_KEY": SIGNING_KEY,
        **extra,
    }


@contextlib.asynccontextmanager
async def replicas(
    emulator: Emulator,
    redis: RedisServer,
    tmp_path: Path,
    count: int = 2,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Replicas]:
    """`count` real `live-relay serve` processes sharing `redis`, in front of `emulator`."""
    projects = tmp_path / "projects.toml"
    projects.write_text(PROJECTS)
    full_env = replica_env(emulator, redis, projects, **(env or {}))
    started: list[RelayProcess] = []
    try:
        for index in range(count):
            # Started in a thread: the emulator answers in this event loop meanwhile.
            started.append(
                await asyncio.to_thread(RelayProcess, full_env, tmp_path / f"relay-{index}.log")
            )
        yield Replicas(emulator, started)
    finally:
        for relay in started:
            relay.kill()


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def setup_message(**fields: Any) -> str:
    return json.dumps({"setup": {"model": MODEL, "generationConfig": TEXT_ONLY, **fields}})


def text_turn(text: str) -> str:
    return json.dumps(
        {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": text}]}],
                "turnComplete": True,
            }
        }
    )


async def try_open(url: str, credential: str, setup: str) -> ClientConnection | tuple[int, str]:
    """A session whose setup completed, or the (code, reason) the relay closed it with."""
    ws = await connect(url, additional_headers=bearer(credential), open_timeout=20)
    await ws.send(setup)
    try:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=15))
    except ConnectionClosed as closed:
        received = closed.rcvd
        assert received is not None, "the relay dropped the connection without a close frame"
        return received.code, received.reason
    assert "setupComplete" in first, first
    return ws


async def open_session(url: str, credential: str, setup: str) -> ClientConnection:
    opened = await try_open(url, credential, setup)
    assert isinstance(opened, ClientConnection), f"session refused: {opened}"
    return opened


async def refusal(url: str, credential: str, setup: str) -> tuple[int, str]:
    opened = await try_open(url, credential, setup)
    if isinstance(opened, ClientConnection):
        await opened.close()
        raise AssertionError("the session was admitted")
    return opened


async def reply_text(ws: ClientConnection) -> tuple[str, list[dict[str, Any]]]:
    """The model's text until the turn ends, and every frame read meanwhile."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame.get("serverContent", {}).get("turnComplete"):
                break
    text = "".join(
        part.get("text", "")
        for frame in frames
        for part in frame.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )
    return text, frames


async def next_resumable_handle(ws: ClientConnection) -> str:
    """The next resumable `newHandle`: after a turn, the one that includes it."""
    async with asyncio.timeout(15):
        while True:
            update = json.loads(await ws.recv()).get("sessionResumptionUpdate", {})
            if update.get("resumable") and update.get("newHandle"):
                return str(update["newHandle"])


async def say_and_take_handle(ws: ClientConnection, words: str) -> str:
    await ws.send(text_turn(words))
    await reply_text(ws)
    return await next_resumable_handle(ws)


async def mint_token(http_url: str, credential: str, **asked: Any) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{http_url}/v1/tokens", json=asked, headers=bearer(credential))
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


async def upstream_setups(emulator: Emulator) -> int:
    """Setups that reached the upstream so far (after a moment for in-flight ones)."""
    await asyncio.sleep(0.2)
    return emulator.stats.frames_received["setup"]
