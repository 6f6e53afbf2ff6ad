"""Metrics, health and logs of a real `live-relay serve`, scraped and read as ops would."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from app.auth.keys import hash_api_key
from tests.relay.conftest import API_KEY, MODEL, auth_headers
from tests.relay.test_setup_and_closes import text_turn
from tests.support.net import free_port
from tests.support.relay import RelayProcess
from tests.support.scrape import scrape, value


async def open_text_session(relay: RelayProcess) -> ClientConnection:
    ws = await connect(relay.url(), additional_headers=auth_headers())
    setup = {"model": MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}
    await ws.send(json.dumps({"setup": setup}))
    assert "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    return ws


async def one_turn(ws: ClientConnection, text: str) -> int:
    """Send a text turn, read to its usageMetadata; return the frames received."""
    await ws.send(text_turn(text))
    frames = 0
    while True:
        frame = await asyncio.wait_for(ws.recv(), timeout=10)
        frames += 1
        if b"usageMetadata" in (frame if isinstance(frame, bytes) else frame.encode()):
            return frames


def session_lines(relay: RelayProcess) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in relay.output().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") in ("session started", "session ended")]


async def test_two_workers_report_summed_metrics(tmp_path: Path) -> None:
    metrics_port = free_port()  # both workers serve it (SO_REUSEPORT), each with the sum
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_API_KEYS": API_KEY,
            "RELAY_WORKERS": "2",
            "RELAY_METRICS_PORT": str(metrics_port),
            # Each worker has its own memory quota store: room for all, wherever they land.
            "RELAY_DEFAULT_MAX_SESSIONS": "100",
        },
        tmp_path / "relay.log",
    )
    sessions: list[ClientConnection] = []
    try:
        await relay.until_workers_ready(2)
        # Open sessions in bursts until both workers hold some: the kernel picks the worker,
        # and only connections arriving together wake both.
        for _ in range(8):
            sessions += await asyncio.gather(*(open_text_session(relay) for _ in range(10)))
            if len({line["pid"] for line in session_lines(relay)}) == 2:
                break
        assert len({line["pid"] for line in session_lines(relay)}) == 2
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        samples = await scrape(metrics_url)
        assert value(samples, "relay_sessions_active", project="default") == len(sessions)
        for ws in sessions:
            await one_turn(ws, "count me")
            await ws.close()
        for _ in range(100):
            samples = await scrape(metrics_url)
            if value(samples, "relay_sessions_active", project="default") == 0:
                break
            await asyncio.sleep(0.05)
        assert value(samples, "relay_sessions_active", project="default") == 0
        ended = value(samples, "relay_sessions_total", project="default", outcome="client_closed")
        assert ended == len(sessions)
        # Each session sent setup + one turn: frames from clients add up across both workers.
        assert value(samples, "relay_frames_total", direction="client_to_upstream") == 2 * len(
            sessions
        )
        assert value(samples, "relay_tokens_total", project="default", kind="prompt") > 0
        assert value(samples, "relay_closes_total", side="client", code="1000") == len(sessions)
        assert (
            value(samples, "relay_build_info", version=_version(samples), python=_python(samples))
            == 1
        )
        # Refusals are counted by uvicorn's protocols, outside the app, in whichever worker
        # took the connection: they add up too.
        answers = await asyncio.gather(*(_oversized_url_request(relay.port) for _ in range(10)))
        assert all(answer.startswith(b"HTTP/1.1 414") for answer in answers)
        samples = await scrape(metrics_url)
        assert value(samples, "relay_connections_refused_total", reason="uri_too_long") == 10
    finally:
        for ws in sessions:
            await ws.close()
        relay.kill()


async def _oversized_url_request(port: int) -> bytes:
    """A request line over the relay's 8 KiB limit; everything it answered before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/live?x=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


def _label(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, label: str
) -> str:
    for sample_name, labels in samples:
        if sample_name == name:
            return dict(labels)[label]
    raise AssertionError(f"{name} is not exported")


def _version(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> str:
    return _label(samples, "relay_build_info", "version")


def _python(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> str:
    return _label(samples, "relay_build_info", "python")


async def test_metrics_on_their_own_port_behind_a_token(tmp_path: Path) -> None:
    metrics_port = free_port()
    relay = RelayProcess(
        {
            "RELAY_UPSTREAM": "emulator",
            "RELAY_API_KEYS": API_KEY,
            "RELAY_METRICS_PORT": str(metrics_port),
            "RELAY_METRICS_TOKEN": "scrape-secret",
        },
        tmp_path / "relay.log",
    )
    try:
        ws = await open_text_session(relay)
        async with httpx.AsyncClient() as http:
            on_main_port = await http.get(f"http://127.0.0.1:{relay.port}/metrics")
            without_token = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert on_main_port.status_code == 404
        assert without_token.status_code == 401
        samples = await scrape(f"http://127.0.0.1:{metrics_port}/metrics", "scrape-secret")
        assert value(samples, "relay_sessions_active", project="default") == 1
        await ws.close()
    finally:
        relay.kill()


async def test_a_session_logs_one_start_and_one_end_line_with_its_id(tmp_path: Path) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY}, tmp_path / "relay.log"
    )
    try:
        ws = await open_text_session(relay)
        for _ in range(3):
            await one_turn(ws, "log me")
        await ws.close(4000, "bye")
        relay.wait_for_log('"session ended"')
        async with httpx.AsyncClient() as http:
            refused = await http.get(
                f"http://127.0.0.1:{relay.port}/v1/live",
                headers={
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            )
        assert refused.status_code == 401
        assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
        await asyncio.sleep(0.2)
    finally:
        relay.kill()
    start, end = session_lines(relay)
    assert start["session"] == end["session"]
    assert start["project"] == end["project"] == "default"
    assert end["closed_by"] == "client"
    assert end["code"] == 4000
    assert end["reason"] == "bye"
    assert end["frames_in"] == 4  # setup + three turns
    assert isinstance(end["frames_out"], int)
    assert end["frames_out"] > 6
    assert isinstance(end["prompt_tokens"], int)
    assert end["prompt_tokens"] > 0
    output = relay.output()
    assert API_KEY not in output
    assert "log me" not in output  # never a frame payload
    errors = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "ERROR"
    ]
    assert errors == []


async def test_no_credential_and_no_payload_reaches_the_logs_even_at_debug(
    tmp_path: Path,
) -> None:
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_API_KEYS": API_KEY, "RELAY_LOG_LEVEL": "debug"},
        tmp_path / "relay.log",
    )
    secrets = [API_KEY]
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(2):  # each token starts one session
                minted = await http.post(
                    f"http://127.0.0.1:{relay.port}/v1/tokens",
                    json={},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                secrets.append(minted.json()["token"])
        in_url, in_subprotocol = secrets[1:]
        setup = json.dumps({"setup": {"model": MODEL}})
        for url, extra in [
            (f"{relay.url()}?key={API_KEY}", {}),
            (f"{relay.url()}?access_token={in_url}", {}),
            (relay.url(), {"subprotocols": ["live-relay", in_subprotocol]}),
            (relay.url(), {"additional_headers": {"x-goog-api-key": API_KEY}}),
        ]:
            async with connect(url, **extra) as ws:  # type: ignore[arg-type]
                await ws.send(setup)
                await asyncio.wait_for(ws.recv(), timeout=10)
                await ws.send(text_turn("a private payload"))
                await asyncio.wait_for(ws.recv(), timeout=10)
        relay.wait_for_log('"session ended"')
    finally:
        relay.kill()
    # At debug level websockets traces every handshake header and frame: without the relay's
    # log filters this test finds the key, the tokens and the payload in the output.
    output = relay.output()
    for secret in secrets:
        assert secret not in output
    assert "a private payload" not in output


async def test_sighup_reloads_the_projects_file_without_dropping_sessions(tmp_path: Path) -> None:
    first_key, second_key = "lr_first_" + "f" * 40, "lr_second_" + "s" * 40
    projects = tmp_path / "projects.toml"
    projects.write_text(f'[projects.acme]\napi_keys = ["{hash_api_key(first_key)}"]\n')
    relay = RelayProcess(
        {"RELAY_UPSTREAM": "emulator", "RELAY_PROJECTS_FILE": str(projects)},
        tmp_path / "relay.log",
    )
    try:
        live = await connect(relay.url(), additional_headers={"x-goog-api-key": first_key})
        await live.send(json.dumps({"setup": {"model": MODEL}}))
        assert "setupComplete" in json.loads(await asyncio.wait_for(live.recv(), timeout=10))
        with pytest.raises(InvalidStatus):
            await connect(relay.url(), additional_headers={"x-goog-api-key": second_key})

        projects.write_text(f'[projects.acme]\napi_keys = ["{hash_api_key(second_key)}"]\n')
        relay.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            try:
                ws = await connect(relay.url(), additional_headers={"x-goog-api-key": second_key})
                break
            except InvalidStatus:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the new key was not accepted after SIGHUP")
        await ws.close()
        await live.send(text_turn("still on the old key"))
        assert await asyncio.wait_for(live.recv(), timeout=10)
        await live.close()
    finally:
        relay.kill()
