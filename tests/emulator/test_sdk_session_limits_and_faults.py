"""Resumption, connection lifetime and injected faults, seen through the google-genai SDK."""

from __future__ import annotations

import asyncio
import time

import pytest
from google.genai import errors, types

from app.emulator import EmulatorConfig, Faults
from tests.emulator.support import MODEL, sdk_client, tls_emulator
from tests.support.sdk import receive_turn, receive_until, texts
from tests.support.tls import TLSFiles

RESUMABLE_TEXT: types.LiveConnectConfigDict = {
    "response_modalities": [types.Modality.TEXT],
    "session_resumption": {},
}


async def test_a_handle_from_one_connection_resumes_the_conversation_on_the_next(
    tls_files: TLSFiles,
) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL, config=RESUMABLE_TEXT) as session:
            await session.send_realtime_input(text="remember kiwi")
            first_turn = await receive_turn(session)
            _, update = await receive_until(session, "session_resumption_update")
        assert update.session_resumption_update is not None
        handle = update.session_resumption_update.new_handle
        assert handle
        assert update.session_resumption_update.resumable

        resumed: types.LiveConnectConfigDict = {
            **RESUMABLE_TEXT,
            "session_resumption": {"handle": handle},
        }
        async with client.aio.live.connect(model=MODEL, config=resumed) as session:
            await session.send_realtime_input(text="what did I say?")
            second_turn = await receive_turn(session)

    updates = [
        (u.resumable, u.new_handle) for m in first_turn if (u := m.session_resumption_update)
    ]
    # A handle as soon as the session is set up, then none while the model is generating.
    assert [resumable for resumable, _ in updates] == [True, False]
    assert updates[0][1]
    assert updates[1][1] == ""
    assert texts(second_turn) == (
        'Reply 2: you said "what did I say?". Before that you said "remember kiwi".'
    )


async def test_go_away_announces_the_end_of_the_connection_lifetime_then_it_closes_normally(
    tls_files: TLSFiles,
) -> None:
    config = EmulatorConfig(connection_lifetime_seconds=1.0, goaway_notice_seconds=0.5)
    async with tls_emulator(tls_files, config) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL) as session:
            started = time.monotonic()
            _, message = await receive_until(session, "go_away")
            warned_after = time.monotonic() - started
            with pytest.raises(errors.APIError) as caught:
                await receive_turn(session)
            closed_after = time.monotonic() - started

    assert message.go_away is not None
    assert message.go_away.time_left == "0.5s"
    assert 0.3 < warned_after < 0.9
    assert 0.8 < closed_after < 1.5
    assert caught.value.code == 1000


async def test_close_fault_closes_with_the_chosen_code_and_reason_after_n_frames(
    tls_files: TLSFiles,
) -> None:
    faults = Faults(
        close_after_frames=2, close_code=1011, close_reason="The service is currently unavailable."
    )
    async with tls_emulator(tls_files, EmulatorConfig(faults=faults)) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL) as session:
            await session.send_realtime_input(text="hello")  # frame 2, after the setup
            with pytest.raises(errors.APIError) as caught:
                await receive_turn(session)

    assert caught.value.code == 1011
    assert "The service is currently unavailable." in str(caught.value)


async def test_close_fault_at_the_setup_frame_fails_the_connect(tls_files: TLSFiles) -> None:
    faults = Faults(
        close_after_frames=1, close_code=1011, close_reason="Internal error encountered."
    )
    async with tls_emulator(tls_files, EmulatorConfig(faults=faults)) as emulator:
        client = sdk_client(emulator, tls_files)
        with pytest.raises(errors.APIError) as caught:
            async with client.aio.live.connect(model=MODEL):
                pass

    assert caught.value.code == 1011


async def test_drop_fault_ends_the_connection_without_a_close_frame(tls_files: TLSFiles) -> None:
    faults = Faults(drop_after_frames=2)
    async with tls_emulator(tls_files, EmulatorConfig(faults=faults)) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL) as session:
            await session.send_realtime_input(text="hello")
            with pytest.raises(errors.APIError) as caught:
                await receive_turn(session)

    assert caught.value.code == 1006


async def test_setup_delay_fault_holds_back_setup_complete(tls_files: TLSFiles) -> None:
    faults = Faults(setup_delay_seconds=0.4)
    async with tls_emulator(tls_files, EmulatorConfig(faults=faults)) as emulator:
        client = sdk_client(emulator, tls_files)
        started = time.monotonic()
        async with client.aio.live.connect(model=MODEL) as session:
            connected_after = time.monotonic() - started
            assert session.setup_complete is not None

    assert connected_after >= 0.4


async def test_pong_delay_fault_answers_pings_late(tls_files: TLSFiles) -> None:
    faults = Faults(pong_delay_seconds=0.4)
    async with tls_emulator(tls_files, EmulatorConfig(faults=faults)) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL) as session:
            # The SDK keeps its websockets connection private; a ping is what we need of it.
            pong = await session._ws.ping()
            started = time.monotonic()
            latency = await asyncio.wait_for(pong, timeout=5)

    assert latency >= 0.4
    assert time.monotonic() - started >= 0.4


async def test_never_pong_fault_leaves_pings_unanswered(tls_files: TLSFiles) -> None:
    faults = Faults(never_pong=True)
    async with tls_emulator(tls_files, EmulatorConfig(faults=faults)) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL) as session:
            pong = await session._ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pong, timeout=0.5)
            # The session itself still works.
            await session.send_realtime_input(text="still there?")
            assert (await receive_turn(session))[-1].server_content is not None


async def test_pings_are_answered_at_once_without_faults(tls_files: TLSFiles) -> None:
    async with tls_emulator(tls_files) as emulator:
        client = sdk_client(emulator, tls_files)
        async with client.aio.live.connect(model=MODEL) as session:
            pong = await session._ws.ping()
            latency = await asyncio.wait_for(pong, timeout=5)

    assert latency < 0.2
