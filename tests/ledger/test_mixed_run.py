"""Issue 24's first "done when": after a mixed run, the usage report equals the sum of what the
upstream reported, per user and model.

The run: two `live-relay serve` replicas sharing one Redis and one PostgreSQL ledger (reached
through a proxy, so the test can take the database away); users by session token and by JWT,
and an API key (no user); two models; text turns, audio turns, blocking function calls answered
by the client; upstream connections that last two seconds (the relay moves a session across
them); a replica SIGKILLed with a session running; the database gone and back while sessions
run. The expected figures are summed here from every `usageMetadata` the clients received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.auth.keys import hash_api_key
from app.emulator import Emulator, EmulatorConfig
from app.ledger.record import SessionRecord
from app.ledger.store import open_ledger_store
from tests.ledger.support import ADMIN_TOKEN, MODALITY_NAMES, expected_tokens, mint, records_now
from tests.relay.conftest import API_KEY, MODEL, auth_headers
from tests.security.tenants_support import (
    AUDIENCE,
    ISSUER_ONE,
    ISSUER_SECRET_ONE,
    SIGNING_KEY,
    issuer_jwt,
)
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.relay import RelayProcess
from tests.support.scrape import scrape, value
from tests.support.tcp_proxy import TcpProxy

OTHER_MODEL = "gemini-2.0-flash-live-preview-04-09"
START = "2020-01-01T00:00:00Z"
END = "2100-01-01T00:00:00Z"
CHECKPOINT_SECONDS = 0.2
WEATHER = {
    "functionDeclarations": [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
        }
    ]
}
EXPLICIT_ACTIVITY = {"automaticActivityDetection": {"disabled": True}}
PCM_RATE = 16_000


class Client:
    """One client session through a relay, keeping every usage report it received."""

    def __init__(self, ws: ClientConnection, user: str | None, model: str) -> None:
        self.ws = ws
        self.key = (user, model)
        self.reports: list[dict[str, Any]] = []
        self.tool_calls = 0

    @classmethod
    async def open(
        cls,
        url: str,
        headers: Mapping[str, str],
        user: str | None,
        model: str,
        *,
        modality: str = "TEXT",
        tools: bool = False,
        explicit_activity: bool = False,
    ) -> Client:
        ws = await connect(url, additional_headers=dict(headers), compression=None)
        setup: dict[str, Any] = {
            "model": model,
            "generationConfig": {"responseModalities": [modality]},
        }
        if tools:
            setup["tools"] = [WEATHER]
        if explicit_activity:
            setup["realtimeInputConfig"] = EXPLICIT_ACTIVITY
        await ws.send(json.dumps({"setup": setup}))
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert "setupComplete" in first, first
        return cls(ws, user, model)

    async def text(self, text: str) -> None:
        content = {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}
        await self.ws.send(json.dumps({"clientContent": content}))
        await self._until_turn_complete()

    async def speak(self, seconds: float) -> None:
        """An audio turn: `seconds` of 16 kHz PCM between activityStart and activityEnd."""
        await self.ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
        chunk = bytes(int(PCM_RATE * 0.1) * 2)  # 100 ms of 16-bit silence
        blob = {"mimeType": f"audio/pcm;rate={PCM_RATE}", "data": base64.b64encode(chunk).decode()}
        for _ in range(round(seconds / 0.1)):
            await self.ws.send(json.dumps({"realtimeInput": {"audio": blob}}))
        await self.ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
        await self._until_turn_complete()

    async def _until_turn_complete(self) -> None:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=10))
            if "usageMetadata" in frame:
                self.reports.append(frame["usageMetadata"])
            if "toolCall" in frame:
                await self._answer(frame["toolCall"])
            if frame.get("serverContent", {}).get("turnComplete"):
                return

    async def _answer(self, call: dict[str, Any]) -> None:
        self.tool_calls += 1
        responses = [
            {
                "id": function["id"],
                "name": function["name"],
                "response": {"city": function["args"].get("city"), "celsius": 21, "sky": "clear"},
            }
            for function in call["functionCalls"]
        ]
        await self.ws.send(json.dumps({"toolResponse": {"functionResponses": responses}}))

    async def close(self) -> None:
        await self.ws.close()


def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "projects.toml"
    path.write_text(
        f'[projects.acme]\napi_keys = ["{hash_api_key(API_KEY)}"]\n\n'
        f'[[projects.acme.issuers]]\nissuer = "{ISSUER_ONE}"\naudience = "{AUDIENCE}"\n'
        f'algorithm = "HS256"\nsecret = "{ISSUER_SECRET_ONE}"\n'
    )
    return path


def expected_row(tokens: Counter[str], sessions: int) -> dict[str, Any]:
    """A report row's token figures, from the sums of what the clients were told."""
    kinds = {"prompt": "prompt", "response": "response", "cached": "cached", "toolUse": "tool_use"}
    return {
        "sessions": sessions,
        "promptTokens": tokens["prompt_tokens"],
        "responseTokens": tokens["response_tokens"],
        "cachedTokens": tokens["cached_tokens"],
        "thinkingTokens": tokens["thinking_tokens"],
        "toolUseTokens": tokens["tool_use_tokens"],
        "totalTokens": tokens["total_tokens"],
        "byModality": {
            name: {modality: tokens[f"{kind}_{modality.lower()}"] for modality in MODALITY_NAMES}
            for name, kind in kinds.items()
        },
    }


async def until_recorded(
    postgres_url: str, finals: int, killed: str | None, within: float = 20.0
) -> list[SessionRecord]:
    """The ledger's records once `finals` are final (and the killed session's is there)."""
    store = open_ledger_store(postgres_url, timeout_seconds=5)
    try:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            records = await records_now(store, "acme")
            if sum(record.final for record in records) >= finals and len(records) >= finals + (
                killed is not None
            ):
                return records
            assert asyncio.get_running_loop().time() < deadline, records
            await asyncio.sleep(0.05)
    finally:
        await store.aclose()


async def test_the_report_after_a_mixed_run_equals_what_the_upstream_reported(
    postgres_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Every upstream connection ends after 2 s (goAway 0.5 s before): sessions longer than
    # that are moved to a new one by the relay, unseen by their client.
    short_lived = EmulatorConfig(connection_lifetime_seconds=2.0, goaway_notice_seconds=0.5)
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    through_proxy = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    metrics_port = free_port()
    clients: list[Client] = []
    replicas: list[RelayProcess] = []
    async with Emulator(short_lived) as emulator:

        def env(index: int) -> dict[str, str]:
            return {
                "RELAY_UPSTREAM": "emulator",
                "RELAY_EMULATOR_URL": emulator.base_url,
                "RELAY_REDIS_URL": redis_server.url,
                "RELAY_PROJECTS_FILE": str(projects_file(tmp_path)),
                "RELAY_TOKEN_SIGNING_KEY": SIGNING_KEY,
                "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "RELAY_LEDGER_URL": through_proxy,
                "RELAY_LEDGER_SPOOL_DIR": str(tmp_path / f"spool-{index}"),
                "RELAY_LEDGER_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS),
                "RELAY_LEDGER_RETRY_SECONDS": "0.2",
                "RELAY_LEDGER_TIMEOUT_SECONDS": "2",
                **({"RELAY_METRICS_PORT": str(metrics_port)} if index == 0 else {}),
            }

        try:
            # Started in threads: the emulator answers in this event loop meanwhile.
            replicas = list(
                await asyncio.gather(
                    *(
                        asyncio.to_thread(RelayProcess, env(index), tmp_path / f"relay-{index}.log")
                        for index in range(2)
                    )
                )
            )
            for replica in replicas:
                await asyncio.to_thread(replica.wait_for_log, "relay ready", 30)
            one, two = replicas
            key = auth_headers()
            # A session token starts one session; tokens minted on one replica work on both.
            alice, bob, alice_again = [
                await mint(f"http://127.0.0.1:{one.port}", user)
                for user in ("alice", "bob", "alice")
            ]
            carol = {
                "Authorization": f"Bearer {issuer_jwt(ISSUER_ONE, ISSUER_SECRET_ONE, 'carol')}"
            }

            async def opened(relay: RelayProcess, *args: Any, **options: Any) -> Client:
                client = await Client.open(relay.url(), *args, **options)
                clients.append(client)
                return client

            # --- the database is up; both replicas serve ---
            c = await opened(one, key, None, MODEL)
            await c.text("an API key's first turn")
            await c.text("and its second")
            await c.close()
            c = await opened(two, alice, "alice", MODEL, modality="AUDIO", explicit_activity=True)
            await c.speak(0.4)
            await c.speak(0.6)
            await c.close()
            c = await opened(two, carol, "carol", OTHER_MODEL, tools=True)
            await c.text('what is the weather? get_weather {"city": "Paris"}')
            await c.text("thanks")
            await c.close()
            await until_recorded(postgres_url, 3, None)  # the closed sessions' final records
            # A session on replica two, killed with it: its last checkpoint is what counts.
            killed = await opened(two, bob, "bob", MODEL, tools=True)
            await killed.text('get_weather {"city": "Oslo"} please')
            await killed.text("and one more turn")
            await asyncio.sleep(3 * CHECKPOINT_SECONDS)  # at least one checkpoint after them
            await asyncio.to_thread(two.kill)
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(killed.ws.recv(), timeout=10)

            # --- replica one alone; a session runs across upstream switches and the outage ---
            long = await opened(one, alice_again, "alice", MODEL, tools=True)
            await long.text("a turn before the database goes away")
            await proxy.stop()
            c = await opened(one, key, None, OTHER_MODEL, modality="AUDIO", explicit_activity=True)
            await c.speak(0.5)
            await c.close()
            c = await opened(one, carol, "carol", MODEL, tools=True)
            await c.text('get_weather {"city": "Lima"}')
            await c.close()
            for turn in range(3):  # about 4 s: past two connection lifetimes
                await asyncio.sleep(1.2)
                await long.text(f"turn {turn} of the long session, get_weather")
            spooled = value(
                await scrape(f"http://127.0.0.1:{metrics_port}/metrics"),
                "relay_ledger_records_spooled_total",
            )
            await proxy.start()
            await long.text("a turn after the database is back")
            await long.close()

            records = await until_recorded(postgres_url, len(clients) - 1, "bob")
            async with httpx.AsyncClient() as http:
                answer = await http.get(
                    f"http://127.0.0.1:{one.port}/v1/projects/acme/usage/report",
                    params={"start": START, "end": END, "groupBy": "user,model"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
        finally:
            for replica in replicas:
                await asyncio.to_thread(replica.kill)
            await proxy.stop()

    # The run was the run described: every part of it happened.
    assert spooled >= 2  # the two sessions closed during the outage, at least
    assert sum(client.tool_calls for client in clients) == 6
    [bobs] = [record for record in records if record.user_id == "bob"]
    assert not bobs.final
    assert max(record.upstream_switches for record in records) >= 1
    # What the clients were told, per user and model.
    expected: dict[tuple[str | None, str], Counter[str]] = {}
    sessions: Counter[tuple[str | None, str]] = Counter()
    for client in clients:
        expected.setdefault(client.key, Counter()).update(expected_tokens(client.reports))
        sessions[client.key] += 1
    seen = sum(expected.values(), Counter())
    for column in ("tool_use_text", "prompt_audio", "response_audio"):
        assert seen[column] > 0, column
    assert answer.status_code == 200, answer.text
    rows = {(row["user"], row["model"]): row for row in answer.json()["rows"]}
    assert set(rows) == set(expected)
    for group, tokens in expected.items():
        row = {name: rows[group][name] for name in expected_row(tokens, 0)}
        assert row == expected_row(tokens, sessions[group]), group
