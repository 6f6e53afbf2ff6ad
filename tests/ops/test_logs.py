"""Log lines: JSON shape, session ids, and no token from a query string in any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from app.logs import (
    REDACTED,
    JsonFormatter,
    SessionFilter,
    TextFormatter,
    hash_user,
    redact_query,
    session_id_var,
)
from tests.ops.log_server import SESSION_ID
from tests.support.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("SECRET-ONE", "SECRET-TWO", "SECRET-THREE")


class Captured:
    """A private logger whose lines (formatted as the relay formats them) land in a buffer."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(formatter)
        handler.addFilter(SessionFilter())
        self.logger = logging.getLogger(f"tests.ops.{uuid.uuid4().hex}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(handler)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def entries(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def json_log() -> Captured:
    return Captured(JsonFormatter())


def test_json_line_carries_ts_level_logger_msg_and_extra_fields(json_log: Captured) -> None:
    json_log.logger.info("session %s", "ended", extra={"project": "demo", "frames_in": 3})
    [entry] = json_log.entries()
    assert entry["level"] == "INFO"
    assert entry["logger"] == json_log.logger.name
    assert entry["msg"] == "session ended"
    assert entry["project"] == "demo"
    assert entry["frames_in"] == 3
    assert str(entry["ts"]).endswith("+00:00")


def test_json_line_keeps_its_own_fields_when_an_extra_has_the_same_name(
    json_log: Captured,
) -> None:
    json_log.logger.warning("careful", extra={"level": "fake", "ts": "fake"})
    [entry] = json_log.entries()
    assert entry["level"] == "WARNING"
    assert entry["ts"] != "fake"


def test_json_line_writes_values_json_cannot_encode_as_text(json_log: Captured) -> None:
    json_log.logger.info("file loaded", extra={"path": Path("/etc/relay/projects.toml")})
    assert json_log.entries()[0]["path"] == "/etc/relay/projects.toml"


def test_an_exception_is_one_field_with_the_traceback_on_one_line(json_log: Captured) -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        json_log.logger.exception("pump failed")
    [line] = json_log.lines()
    entry = json.loads(line)
    assert entry["msg"] == "pump failed"
    assert str(entry["exc"]).startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in str(entry["exc"])


def test_uvicorns_coloured_copy_of_a_message_is_left_out(json_log: Captured) -> None:
    json_log.logger.info("Started server process [%d]", 7, extra={"color_message": "\x1b[36m"})
    assert "color_message" not in json_log.entries()[0]


async def test_lines_carry_the_session_of_the_task_that_logged(json_log: Captured) -> None:
    async def session(session_id: str) -> None:
        session_id_var.set(session_id)
        for step in range(3):
            json_log.logger.info("%s step %d", session_id, step)
            await asyncio.sleep(0)  # let the other session log in between

    await asyncio.gather(session("s-a"), session("s-b"))
    json_log.logger.info("outside any session")
    entries = json_log.entries()
    assert len(entries) == 7
    for entry in entries[:6]:
        assert str(entry["msg"]).startswith(f"{entry['session']} ")
    assert {entry["session"] for entry in entries[:6]} == {"s-a", "s-b"}
    assert "session" not in entries[6]


def test_text_line_shows_level_logger_message_and_fields() -> None:
    text_log = Captured(TextFormatter())
    # pytest does not give a plain test a context of its own: set the session, then reset it,
    # or every later test of this worker logs "outside any session" under s-text.
    token = session_id_var.set("s-text")
    try:
        text_log.logger.info("session ended", extra={"project": "demo", "reason": "client closed"})
    finally:
        session_id_var.reset(token)
    [line] = text_log.lines()
    assert f"INFO {text_log.logger.name}: session ended" in line
    assert "project=demo" in line
    assert 'reason="client closed"' in line
    assert "session=s-text" in line


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/v1/live", "/v1/live"),
        ("/v1/live?access_token=abc", f"/v1/live?access_token={REDACTED}"),
        ("/v1/live?key=k1&access_token=t2", f"/v1/live?key={REDACTED}&access_token={REDACTED}"),
        ("/v1/live?bare-token", f"/v1/live?{REDACTED}"),
        ("//ws/x?key=", f"//ws/x?key={REDACTED}"),
    ],
)
def test_query_values_are_redacted_and_paths_kept(path: str, logged: str) -> None:
    assert redact_query(path) == logged


def test_user_hash_is_short_stable_and_does_not_show_the_user() -> None:
    hashed = hash_user("alice@example.com")
    assert hashed == hash_user("alice@example.com")
    assert hashed != hash_user("bob@example.com")
    assert hashed is not None
    assert len(hashed) == 16
    assert "alice" not in hashed
    assert hash_user(None) is None


def run_log_server(tmp_path: Path, **relay_env: str) -> list[str]:
    """Run tests.ops.log_server with these RELAY_* settings, send it an HTTP request and a
    WebSocket session with tokens in their query strings, stop it; return its output lines."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    log_file = tmp_path / f"server-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.ops.log_server", str(port)],
            env=env | relay_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, timeout=30)
            base = f"127.0.0.1:{port}"
            query = f"access_token={SECRETS[0]}&key={SECRETS[1]}"
            assert httpx.get(f"http://{base}/hello?{query}").status_code == 200
            with (
                connect(f"ws://{base}/ws?access_token={SECRETS[2]}") as websocket,
                pytest.raises(ConnectionClosedOK),
            ):
                websocket.recv(timeout=10)
            # uvicorn shuts down gracefully (so every line is written), then re-raises SIGTERM.
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    return log_file.read_text().splitlines()


def test_uvicorn_lines_show_query_tokens_redacted_in_json(tmp_path: Path) -> None:
    lines = run_log_server(tmp_path, RELAY_LOG_FORMAT="json")
    entries = [json.loads(line) for line in lines]  # every line is JSON
    output = "\n".join(lines)
    for secret in SECRETS:
        assert secret not in output
    messages = [str(entry["msg"]) for entry in entries]
    access = f'"GET /hello?access_token={REDACTED}&key={REDACTED} HTTP/1.1" 200'
    assert any(message.endswith(access) for message in messages)
    handshake = f'"WebSocket /ws?access_token={REDACTED}" [accepted]'
    assert any(message.endswith(handshake) for message in messages)


def test_the_websocket_librarys_open_and_closed_lines_are_left_out(tmp_path: Path) -> None:
    # They repeat uvicorn's handshake line and the session's own two lines, with nothing of
    # their own: in a storm they were a third of the CPU logging took per session.
    messages = [
        str(json.loads(line)["msg"]) for line in run_log_server(tmp_path, RELAY_LOG_FORMAT="json")
    ]
    assert any(message.endswith("[accepted]") for message in messages)
    assert "session started" in messages
    assert "connection open" not in messages
    assert "connection closed" not in messages


def test_lines_logged_inside_a_session_carry_its_id(tmp_path: Path) -> None:
    entries = [json.loads(line) for line in run_log_server(tmp_path, RELAY_LOG_FORMAT="json")]
    by_message = {str(entry["msg"]): entry for entry in entries}
    assert by_message["session started"]["session"] == SESSION_ID
    assert by_message["hello handled"]["project"] == "demo"
    assert "session" not in by_message["hello handled"]


def test_text_format_writes_plain_lines_with_the_same_redaction(tmp_path: Path) -> None:
    lines = run_log_server(tmp_path, RELAY_LOG_FORMAT="text")
    output = "\n".join(lines)
    for secret in SECRETS:
        assert secret not in output
    assert f"GET /hello?access_token={REDACTED}&key={REDACTED} HTTP/1.1" in output
    assert f"session started session={SESSION_ID}" in output
    assert not any(line.startswith("{") for line in lines)


def test_warning_level_leaves_out_access_and_info_lines(tmp_path: Path) -> None:
    lines = run_log_server(tmp_path, RELAY_LOG_FORMAT="json", RELAY_LOG_LEVEL="warning")
    entries = [json.loads(line) for line in lines]
    assert [entry["msg"] for entry in entries] == ["hello warned"]
    assert entries[0]["level"] == "WARNING"
