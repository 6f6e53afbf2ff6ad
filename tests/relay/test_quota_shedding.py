"""Over the tokens-per-minute budget, two real `live-relay serve` replicas sharing one real
Redis end the fewest top spenders (the "shed" policy), or every session ("end_all")."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.relay.test_quota_replicas import start_replicas, try_session
from tests.relay.test_setup_and_closes import text_turn
from tests.support.redis_server import RedisServer
from tests.support.relay import RelayProcess

BUDGET = 600_000
SESSIONS = 8
GRACE_PERCENT = 50
"""Shedding starts at 1.5 times the budget and stops once the rest spend under the budget:
the survivors' next turns then fit in the window, which a test cannot wait a minute to see
slide."""


@dataclass
class Talker:
    """One client's conversation: its context grows by what it types each turn."""

    number: int
    ws: object
    turns: int = 0
    tokens: int = 0
    """The latest turn's totalTokenCount: the whole conversation so far, as Vertex bills."""
    spent: int = 0
    """Every turn's totalTokenCount added up: what the relay charged for this session."""
    saw_goaway: bool = False
    close: tuple[int, str] | None = None
    frames: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        # Session 7 types 8 times what session 0 does: the replies, alike in every session,
        # must not blur who spends the most.
        return "x" * (1_000 * (self.number + 1))

    async def turn(self) -> None:
        """One turn, read to its turnComplete; a close on the way is recorded, not raised."""
        ws = self.ws
        try:
            # A close already received fails the send, with frames sent before it unread.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(text_turn(self.text))  # type: ignore[attr-defined]
            while True:
                frame = await asyncio.wait_for(ws.recv(), timeout=10)  # type: ignore[attr-defined]
                message = json.loads(frame)
                self.frames.append(next(iter(message)))
                if "goAway" in message:
                    self.saw_goaway = True
                if "usageMetadata" in message:
                    self.tokens = message["usageMetadata"]["totalTokenCount"]
                    self.spent += self.tokens
                if message.get("serverContent", {}).get("turnComplete"):
                    self.turns += 1
                    return
        except ConnectionClosed as closed:
            received = closed.rcvd  # None: dropped without a close frame, which fails below
            self.close = (
                (1006, "no close frame") if received is None else (received.code, received.reason)
            )


def shedding_replicas(
    redis_server: RedisServer, tmp_path: Path, policy: str
) -> Iterator[list[RelayProcess]]:
    yield from start_replicas(
        2,
        redis_server.url,
        tmp_path,
        lease_ttl=30,
        env={
            "RELAY_DEFAULT_TOKENS_PER_MINUTE": str(BUDGET),
            "RELAY_DEFAULT_MAX_SESSIONS": "20",
            "RELAY_DEFAULT_OVER_BUDGET": policy,
            "RELAY_DEFAULT_SHED_GRACE_PERCENT": str(GRACE_PERCENT),
        },
    )


@pytest.fixture
def shed_replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[RelayProcess]]:
    yield from shedding_replicas(redis_server, tmp_path, "shed")


@pytest.fixture
def end_all_replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[RelayProcess]]:
    yield from shedding_replicas(redis_server, tmp_path, "end_all")


async def open_talkers(replicas: list[RelayProcess]) -> list[Talker]:
    talkers = []
    for number in range(SESSIONS):
        ws, code, reason = await try_session(replicas[number % 2])
        assert ws is not None, (code, reason)
        talkers.append(Talker(number, ws))
    return talkers


async def talk_until_someone_ends(talkers: list[Talker], max_rounds: int = 60) -> int:
    """Rounds of one turn per live session, all at once, until a session was closed: the
    round in which that happened."""
    for round_number in range(1, max_rounds + 1):
        for talker in talkers:  # one turn at a time: each charge moves the window a little
            if talker.close is None:
                await talker.turn()
        if any(t.close is not None for t in talkers):
            return round_number
    raise AssertionError(f"nobody ended in {max_rounds} rounds: {[t.tokens for t in talkers]}")


async def test_shed_ends_only_the_top_spenders_and_the_rest_keep_talking(
    shed_replicas: list[RelayProcess],
) -> None:
    talkers = await open_talkers(shed_replicas)

    await talk_until_someone_ends(talkers)
    # The close of a session shed at the end of this round's turn may come with the next.
    for _ in range(2):
        await asyncio.gather(*(t.turn() for t in talkers if t.close is None))

    ended = [t for t in talkers if t.close is not None]
    alive = [t for t in talkers if t.close is None]
    assert 1 <= len(ended) <= 3, [(t.number, t.close) for t in ended]
    # The ones that spent the most (they type the most) went first.
    assert {t.number for t in ended} == set(range(SESSIONS - len(ended), SESSIONS)), [
        (t.number, t.spent, t.turns, t.close is not None) for t in talkers
    ]
    for talker in ended:
        assert talker.saw_goaway, f"session {talker.number} was closed without a goAway"
        code, reason = talker.close  # type: ignore[misc]
        assert code == 1013
        assert reason.startswith('RESOURCE_EXHAUSTED: project "default" used ')
        assert f"of its {BUDGET} tokens per minute; retry in " in reason
    # The rest keep talking: a turn each, on both replicas, after the shedding.
    before = [t.turns for t in alive]
    await asyncio.gather(*(t.turn() for t in alive))
    assert [t.turns for t in alive] == [turns + 1 for turns in before]
    assert all(t.close is None for t in alive)
    # Shedding restored the rate, but the window still holds the overage: a shed client that
    # comes back before the retry delay is refused, saying when to come back.
    _, code, reason = await try_session(shed_replicas[0])
    assert code == 1013
    assert "tokens per minute; retry in" in reason
    for talker in alive:
        await talker.ws.close()  # type: ignore[attr-defined]


async def test_end_all_still_ends_every_session_once_the_budget_is_spent(
    end_all_replicas: list[RelayProcess],
) -> None:
    talkers = await open_talkers(end_all_replicas)

    await talk_until_someone_ends(talkers)
    for _ in range(2):
        await asyncio.gather(*(t.turn() for t in talkers if t.close is None))

    assert [t.close is not None for t in talkers] == [True] * SESSIONS
    for talker in talkers:
        code, reason = talker.close  # type: ignore[misc]
        assert (code, talker.saw_goaway) == (1013, True), talker.frames[-8:]
        assert f"of its {BUDGET} tokens per minute; retry in " in reason
