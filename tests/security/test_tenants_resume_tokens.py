"""`?resume=1` lets a session token continue, without spending a use, only a conversation that
this very token started, and only with one resumption field naming a handle: it can never open
a new conversation past the token's uses or its newSessionExpireTime."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import NOT_FOUND
from tests.security.tenants_support import (
    ALPHA_KEY,
    LEAN_KEY,
    MODEL,
    TEXT_ONLY,
    Replicas,
    mint_token,
    open_session,
    refusal,
    reply_text,
    say_and_take_handle,
    setup_message,
    text_turn,
    upstream_setups,
)

NEEDS_HANDLE = (1008, "?resume=1 resumes a session: send setup.sessionResumption.handle")
RESUME = "?resume=1"


async def test_resume_1_continues_only_what_the_same_token_started(
    two_replicas: Replicas,
) -> None:
    first = await mint_token(two_replicas.http(0), ALPHA_KEY, uses=1, user="alice")
    second = await mint_token(two_replicas.http(0), ALPHA_KEY, uses=1, user="alice")
    ws = await open_session(two_replicas.url(0), first, setup_message(sessionResumption={}))
    handle = await say_and_take_handle(ws, "remember quinces")
    await ws.close()
    setups = await upstream_setups(two_replicas.emulator)
    # Another token of the same user, unspent: ?resume=1 spends nothing, so it may only
    # continue its own sessions.
    borrowed = await refusal(
        two_replicas.url(1, RESUME), second, setup_message(sessionResumption={"handle": handle})
    )
    assert borrowed == NOT_FOUND
    assert await upstream_setups(two_replicas.emulator) == setups
    resumed = await open_session(
        two_replicas.url(1, RESUME), first, setup_message(sessionResumption={"handle": handle})
    )
    await resumed.send(text_turn("what did I say?"))
    said, _ = await reply_text(resumed)
    await resumed.close()
    assert "remember quinces" in said


SPELLED_TWICE = json.dumps(
    {
        "setup": {
            "model": MODEL,
            "generationConfig": TEXT_ONLY,
            "sessionResumption": {},
            "session_resumption": {"handle": "x"},
        }
    }
)
EMPTY_HANDLE = setup_message(sessionResumption={"handle": ""})
NO_HANDLE = setup_message(sessionResumption={})


@pytest.mark.parametrize(
    ("setup", "expected"),
    [(SPELLED_TWICE, 1007), (EMPTY_HANDLE, 1008), (NO_HANDLE, 1008)],
    ids=["spelled_twice", "empty_handle", "no_handle"],
)
async def test_a_spent_token_with_resume_1_opens_no_new_conversation(
    two_replicas: Replicas, setup: str, expected: int
) -> None:
    token = await mint_token(two_replicas.http(0), LEAN_KEY, uses=1)
    spent = await open_session(two_replicas.url(0), token, setup_message())
    await spent.close()
    setups = await upstream_setups(two_replicas.emulator)
    code, _ = await refusal(two_replicas.url(1, RESUME), token, setup)
    assert code == expected  # 1007: two spellings of one field; 1008: nothing to resume
    assert await upstream_setups(two_replicas.emulator) == setups


async def test_a_resumption_field_in_two_spellings_is_an_invalid_argument(
    two_replicas: Replicas,
) -> None:
    token = await mint_token(two_replicas.http(0), LEAN_KEY, uses=1)
    code, _ = await refusal(two_replicas.url(0, RESUME), token, SPELLED_TWICE)
    assert code == 1007
