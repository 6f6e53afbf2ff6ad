"""Sessions through the relay with raw frames, and the usage the client saw, summed by hand."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from app.ledger.record import SessionRecord
from app.ledger.store import LedgerStore, LedgerStoreError
from tests.relay.conftest import MODEL, auth_headers
from tests.support.relay import RunningRelay

ADMIN_TOKEN = "admin-" + "a" * 32
MODALITY_NAMES = ("TEXT", "AUDIO", "VIDEO", "IMAGE")


async def mint(http_url: str, user: str) -> dict[str, str]:
    """Headers carrying a session token minted for `user` by the relay at `http_url`."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{http_url}/v1/tokens", json={"user": user}, headers=auth_headers()
        )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def open_session(
    url: str, headers: Mapping[str, str], modality: str = "TEXT"
) -> ClientConnection:
    """A session through the relay at `url` (ws://.../v1/live), set up."""
    ws = await connect(url, additional_headers=dict(headers), compression=None)
    setup = {"model": MODEL, "generationConfig": {"responseModalities": [modality]}}
    await ws.send(json.dumps({"setup": setup}))
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert "setupComplete" in first
    return ws


async def turn(ws: ClientConnection, text: str) -> dict[str, Any]:
    """Send a text turn; return the usageMetadata the relay passed on at its end."""
    message = {
        "clientContent": {
            "turns": [{"role": "user", "parts": [{"text": text}]}],
            "turnComplete": True,
        }
    }
    await ws.send(json.dumps(message))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        if "usageMetadata" in frame:
            usage: dict[str, Any] = frame["usageMetadata"]
            return usage


async def session(
    relay: RunningRelay, headers: Mapping[str, str], texts: Sequence[str], modality: str = "TEXT"
) -> list[dict[str, Any]]:
    """A whole session of text turns, closed by the client; the usage reports it got."""
    ws = await open_session(relay.url, headers, modality)
    reports = [await turn(ws, text) for text in texts]
    await ws.close()
    return reports


def expected_tokens(reports: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """The sums of the upstream's reports, counted here without the relay's parser."""
    sums: Counter[str] = Counter()
    for report in reports:
        sums["prompt_tokens"] += report.get("promptTokenCount", 0)
        sums["response_tokens"] += report.get("candidatesTokenCount", 0)
        sums["cached_tokens"] += report.get("cachedContentTokenCount", 0)
        sums["thinking_tokens"] += report.get("thoughtsTokenCount", 0)
        sums["tool_use_tokens"] += report.get("toolUsePromptTokenCount", 0)
        sums["total_tokens"] += report["totalTokenCount"]
        for field, kind in (
            ("promptTokensDetails", "prompt"),
            ("candidatesTokensDetails", "response"),
            ("cacheTokensDetails", "cached"),
            ("toolUsePromptTokensDetails", "tool_use"),
        ):
            for detail in report.get(field, []):
                sums[f"{kind}_{detail['modality'].lower()}"] += detail["tokenCount"]
    return +sums  # without zero counts, as `nonzero` compares


def nonzero(tokens: Mapping[str, int] | None) -> Counter[str]:
    assert tokens is not None
    return Counter({name: count for name, count in tokens.items() if count})


async def final_records(
    store: LedgerStore, project: str, count: int, within: float = 15.0
) -> list[SessionRecord]:
    """The project's records once `count` of them are final (AssertionError after `within`)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        records = await records_now(store, project)
        if sum(record.final for record in records) >= count:
            return records
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{count} final records expected, the ledger holds {records}")
        await asyncio.sleep(0.05)


async def records_now(store: LedgerStore, project: str) -> list[SessionRecord]:
    """The project's records; none while the relay has not created its tables yet (it applies
    its migrations in the background at start-up)."""
    try:
        return await store.records(project, 0, 4e9)
    except LedgerStoreError:
        return []
