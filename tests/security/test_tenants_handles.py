"""Resumption handles are tenant-bound: a client gets the relay's own opaque handle, usable
only by the project and owner it was issued to, on any replica; any other is refused exactly
like an unknown handle, before the upstream hears of it (app/relay/client/handles.py)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.relay.upstream.upstream import live_url
from tests.security.conftest import NOT_FOUND
from tests.security.tenants_support import (
    ALPHA_KEY,
    ALPHA_OTHER_KEY,
    BETA_KEY,
    LEAN_KEY,
    LEAN_OTHER_KEY,
    Replicas,
    open_session,
    refusal,
    reply_text,
    say_and_take_handle,
    setup_message,
    text_turn,
    upstream_setups,
)

SECRET_WORDS = "my card number is 4111-1111-1111-1111"


async def handle_of_a_secret(running: Replicas, key: str) -> str:
    """A session of `key`'s project on replica 0 that said the secret words: its handle."""
    ws = await open_session(running.url(0), key, setup_message(sessionResumption={}))
    try:
        return await say_and_take_handle(ws, SECRET_WORDS)
    finally:
        await ws.close()


async def test_a_client_never_sees_an_upstream_handle(two_replicas: Replicas) -> None:
    handle = await handle_of_a_secret(two_replicas, ALPHA_KEY)
    # Straight to the upstream, the client's handle is nothing: not a Vertex capability.
    emulator = two_replicas.emulator
    model = emulator.stats.setups[-1]["model"]  # as the relay names it upstream
    async with connect(live_url(emulator.base_url, "v1beta1")) as raw:
        resume = {"model": model, "sessionResumption": {"handle": handle}}
        await raw.send(json.dumps({"setup": resume}))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):  # a resumed session would answer and stay open
                while True:
                    await raw.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == NOT_FOUND


@pytest.mark.parametrize(
    "thief", [BETA_KEY, ALPHA_OTHER_KEY], ids=["another_project", "another_key_same_project"]
)
async def test_another_tenants_handle_is_refused_like_an_unknown_one_and_never_reaches_upstream(
    two_replicas: Replicas, thief: str
) -> None:
    handle = await handle_of_a_secret(two_replicas, ALPHA_KEY)
    setups = await upstream_setups(two_replicas.emulator)
    stolen = await refusal(
        two_replicas.url(1), thief, setup_message(sessionResumption={"handle": handle})
    )
    altered = handle[:-2] + ("AA" if not handle.endswith("AA") else "BB")
    tampered = await refusal(
        two_replicas.url(1), thief, setup_message(sessionResumption={"handle": altered})
    )
    unknown = await refusal(
        two_replicas.url(1), thief, setup_message(session_resumption={"handle": "0123abcd"})
    )
    assert stolen == tampered == unknown == NOT_FOUND  # no oracle: one answer for all
    assert await upstream_setups(two_replicas.emulator) == setups


async def test_the_owner_resumes_its_handle_on_another_replica(two_replicas: Replicas) -> None:
    handle = await handle_of_a_secret(two_replicas, ALPHA_KEY)
    ws = await open_session(
        two_replicas.url(1), ALPHA_KEY, setup_message(sessionResumption={"handle": handle})
    )
    await ws.send(text_turn("what did I say?"))
    said, _ = await reply_text(ws)
    await ws.close()
    assert SECRET_WORDS in said


async def test_handles_are_bound_on_projects_without_the_relays_own_resumption(
    two_replicas: Replicas,
) -> None:
    handle = await handle_of_a_secret(two_replicas, LEAN_KEY)
    assert handle.startswith("lrh1.")
    setups = await upstream_setups(two_replicas.emulator)
    stolen = await refusal(
        two_replicas.url(1), LEAN_OTHER_KEY, setup_message(sessionResumption={"handle": handle})
    )
    assert stolen == NOT_FOUND
    assert await upstream_setups(two_replicas.emulator) == setups
    ws = await open_session(
        two_replicas.url(1), LEAN_KEY, setup_message(sessionResumption={"handle": handle})
    )
    await ws.send(text_turn("what did I say?"))
    said, _ = await reply_text(ws)
    await ws.close()
    assert SECRET_WORDS in said
