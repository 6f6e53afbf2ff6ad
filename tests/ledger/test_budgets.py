"""Budgets refuse new sessions and end running ones exactly at their limit, across replicas."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.auth.keys import hash_api_key
from app.emulator import Emulator, EmulatorConfig
from tests.ledger.support import open_session, turn
from tests.relay.conftest import API_KEY, MODEL, auth_headers, relay_settings
from tests.security.tenants_support import (
    AUDIENCE,
    ISSUER_ONE,
    ISSUER_SECRET_ONE,
    ISSUER_SECRET_TWO,
    ISSUER_TWO,
    issuer_jwt,
)
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.relay import RelayProcess, running_relay
from tests.support.scrape import scrape, value

TOMORROW = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")


def projects_file(tmp_path: Path, budgets: str) -> Path:
    path = tmp_path / "projects.toml"
    path.write_text(
        f'[projects.acme]\napi_keys = ["{hash_api_key(API_KEY)}"]\n\n'
        f"[projects.acme.budgets]\n{budgets}\n"
    )
    return path


async def one_turn_costs(emulator: Emulator) -> int:
    """The total tokens the emulator reports for a fresh session's turn "hi"."""
    async with running_relay(relay_settings(emulator, None)) as relay:
        ws = await open_session(relay.url, auth_headers())
        usage = await turn(ws, "hi")
        await ws.close()
    total: int = usage["totalTokenCount"]
    return total


async def refusal_of(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """Open a session that must be refused; its close code and reason."""
    ws = await connect(url, additional_headers=headers, compression=None)
    setup = {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}
    await ws.send(json.dumps({"setup": setup}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout=10)
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


async def turn_then_close(ws: ClientConnection, text: str) -> tuple[list[str], int, str]:
    """Send a turn; the top-level keys of what follows, and the close the relay sends."""
    content = {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}
    await ws.send(json.dumps({"clientContent": content}))
    keys: list[str] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            keys.extend(frame)
    received = closed.value.rcvd
    assert received is not None
    return keys, received.code, received.reason


async def test_a_project_budget_is_exact_at_its_limit_across_three_replicas(
    emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    cost = await one_turn_costs(emulator)
    limit = 2 * cost
    env = {
        "RELAY_UPSTREAM": "emulator",
        "RELAY_EMULATOR_URL": emulator.base_url,
        "RELAY_REDIS_URL": redis_server.url,
        "RELAY_PROJECTS_FILE": str(projects_file(tmp_path, f"tokens_per_day = {limit}")),
    }
    metrics_ports = [free_port() for _ in range(3)]  # /metrics is off the clients' port
    replicas = [
        RelayProcess({**env, "RELAY_METRICS_PORT": str(port)}, tmp_path / f"relay-{index}.log")
        for index, port in enumerate(metrics_ports)
    ]
    try:
        for replica in replicas:
            replica.wait_for_log("relay ready", timeout=30)
        first, second, third = replicas
        # Under the budget: a session runs its turn and ends as its client wants.
        ws = await open_session(first.url(), auth_headers())
        await turn(ws, "hi")
        await ws.close()
        # Still under (cost of 2 * cost): admitted elsewhere; its turn reaches the limit, so
        # it is told to go away, then closed with the budget named, after its reply.
        ws = await open_session(second.url(), auth_headers())
        keys, code, reason = await turn_then_close(ws, "hi")
        spent = f'RESOURCE_EXHAUSTED: project "acme" used {limit} of its {limit} tokens per day'
        assert code == 1013
        assert reason == f"{spent}; resets {TOMORROW}"
        assert keys[-2:] == ["usageMetadata", "goAway"]
        # At the limit: refused on every replica, with the same words.
        for replica in (third, first):
            assert await refusal_of(replica.url(), auth_headers()) == (1013, reason)
        samples = await scrape(f"http://127.0.0.1:{metrics_ports[1]}/metrics")
    finally:
        for replica in replicas:
            replica.kill()
    labels: dict[str, Any] = {"project": "acme", "budget": "tokens_per_day"}
    assert value(samples, "relay_budget_used", **labels) == limit
    assert value(samples, "relay_budget_limit", **labels) == limit
    assert value(samples, "relay_goaways_total", reason="budget") == 1


async def test_a_user_budget_stops_that_user_only(emulator: Emulator, tmp_path: Path) -> None:
    cost = await one_turn_costs(emulator)
    settings = relay_settings(
        emulator,
        None,
        api_keys=(),
        projects_file=projects_file(tmp_path, f"user_tokens_per_day = {cost}"),
    )
    async with running_relay(settings) as relay:

        async def as_user(user: str) -> dict[str, str]:
            async with httpx.AsyncClient() as http:
                answer = await http.post(
                    f"{relay.http_url}/v1/tokens",
                    json={"user": user},
                    headers=auth_headers(),
                )
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        ws = await open_session(relay.url, await as_user("alice"))
        keys, code, reason = await turn_then_close(ws, "hi")
        assert code == 1013
        assert reason.startswith(f'RESOURCE_EXHAUSTED: user "alice" used {cost} of its {cost}')
        assert "goAway" in keys
        assert (await refusal_of(relay.url, await as_user("alice")))[1] == reason
        # Bob has his own budget; an API key's sessions have no user and no user budget.
        for headers in (await as_user("bob"), auth_headers()):
            ws = await open_session(relay.url, headers)
            await turn(ws, "hi")
            await ws.close()


async def test_one_sub_from_two_issuers_has_two_user_budgets(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A user is the user of its issuer, for budgets as for the per-user session cap: another
    identity provider's "alice" neither spends nor is refused by this one's."""
    cost = await one_turn_costs(emulator)
    path = projects_file(tmp_path, f"user_tokens_per_day = {cost}")
    issuers = "".join(
        f'\n[[projects.acme.issuers]]\nissuer = "{issuer}"\naudience = "{AUDIENCE}"\n'
        f'algorithm = "HS256"\nsecret = "{secret}"\n'
        for issuer, secret in ((ISSUER_ONE, ISSUER_SECRET_ONE), (ISSUER_TWO, ISSUER_SECRET_TWO))
    )
    await asyncio.to_thread(path.write_text, path.read_text() + issuers)
    settings = relay_settings(emulator, None, api_keys=(), projects_file=path)
    one = {"Authorization": f"Bearer {issuer_jwt(ISSUER_ONE, ISSUER_SECRET_ONE, 'alice')}"}
    two = {"Authorization": f"Bearer {issuer_jwt(ISSUER_TWO, ISSUER_SECRET_TWO, 'alice')}"}
    async with running_relay(settings) as relay:
        ws = await open_session(relay.url, one)
        _, code, _ = await turn_then_close(ws, "hi")  # spends issuer one's alice's budget
        assert code == 1013
        ws = await open_session(relay.url, two)
        await turn(ws, "hi")
        await ws.close()


async def _frames_until_closed(
    ws: ClientConnection, text: str
) -> tuple[list[tuple[float, dict[str, Any]]], float, int, str]:
    """Send a turn; every frame after it (with when it came), when the close came, its code
    and reason."""
    loop = asyncio.get_running_loop()
    content = {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}
    await ws.send(json.dumps({"clientContent": content}))
    frames: list[tuple[float, dict[str, Any]]] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            frames.append((loop.time(), frame))
    received = closed.value.rcvd
    assert received is not None
    return frames, loop.time(), received.code, received.reason


def _keys(frames: list[tuple[float, dict[str, Any]]]) -> list[str]:
    """What each frame is: its top-level keys, and serverContent's."""
    return [
        "+".join(sorted({*frame, *frame.get("serverContent", {})} - {"serverContent"}))
        for _, frame in frames
    ]


@pytest.mark.parametrize(
    ("chunk_interval", "grace", "ended_by"),
    [
        # The reply outlasts the grace: the bound ends the session mid-reply.
        (1.0, 0.5, "the bound"),
        # The reply ends within the grace: the session ends at its turnComplete, the reply
        # whole (usage beside a reply chunk does not cut the reply).
        (0.1, 10.0, "the turn's end"),
    ],
)
async def test_usage_while_no_turn_ends_ends_the_session_at_the_turn_end_or_the_bound(
    tmp_path: Path, chunk_interval: float, grace: float, ended_by: str
) -> None:
    # Vertex may report usage beside a reply's content: here a turn's prompt usage comes with
    # its first chunk, long before the turn's end (its response's usage comes with turnComplete).
    config = EmulatorConfig(usage_mid_turn=True, reply_chunk_interval_seconds=chunk_interval)
    async with Emulator(config) as emulator:
        settings = relay_settings(
            emulator,
            None,
            api_keys=(),
            projects_file=projects_file(tmp_path, "tokens_per_day = 1"),
            budget_grace_seconds=grace,
        )
        async with running_relay(settings) as relay:
            ws = await open_session(relay.url, auth_headers())
            frames, closed_at, code, reason = await _frames_until_closed(
                ws, "a question whose answer takes several chunks"
            )
    # The first report spends the budget (the second, with turnComplete, changes nothing).
    reported_at, report = next((at, frame) for at, frame in frames if "usageMetadata" in frame)
    used = report["usageMetadata"]["totalTokenCount"]
    assert code == 1013
    assert reason == (
        f'RESOURCE_EXHAUSTED: project "acme" used {used} of its 1 tokens per day; resets {TOMORROW}'
    )
    kinds = _keys(frames)
    assert kinds[0] == "modelTurn+usageMetadata"  # the report that spent the budget
    assert kinds[1] == "goAway"  # told at once
    assert frames[1][1]["goAway"]["timeLeft"] == f"{grace:g}s"
    if ended_by == "the bound":
        assert "turnComplete" not in kinds  # no turn ended: the bound closed it
        assert closed_at - reported_at >= grace
        assert closed_at - reported_at < chunk_interval + grace  # and not much later
    else:
        assert kinds[-1] == "turnComplete+usageMetadata"  # the whole reply, then the close
        assert kinds.count("modelTurn") >= 2
        assert closed_at - reported_at < grace
