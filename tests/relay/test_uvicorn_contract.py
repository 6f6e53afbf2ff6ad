"""The uvicorn internals `bounded_protocols.py` relies on, checked against the installed uvicorn.

The bounded protocols subclass uvicorn's httptools and websockets-sansio protocols and override
methods and read attributes that are not uvicorn's public API. pyproject.toml pins uvicorn's
range; these tests fail loudly, naming the internal, when an upgrade renames or removes one,
instead of leaving an override that is never called or an attribute read that raises in
production.
"""

from __future__ import annotations

import inspect

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.relay.client.bounded_protocols import BoundedHttpProtocol, BoundedWebSocketProtocol

# Methods the relay overrides, each called by uvicorn itself: a rename would silently skip it.
HTTP_OVERRIDES = [
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_message_complete",
]
WEBSOCKET_OVERRIDES = [
    "handle_connect",
    "data_received",
    "pause_writing",
    "resume_writing",
    "send",
    "handle_close",
    "handle_parser_exception",
    "keepalive_timeout",
    "shutdown",
    "run_asgi",
    "connection_lost",
]
# Attributes uvicorn sets on the websockets protocol that the relay reads or sets.
WEBSOCKET_ATTRIBUTES = [
    "close_sent",
    "handshake_complete",
    "handshake_initiated",
    "disconnected",
    "writable",
    "close_timer",
    "close_timeout",
    "conn",
    "queue",
    "transport",
    "scope",
    "app_state",
    "response",
]
HTTP_ATTRIBUTES = ["parser", "transport", "cycle", "server_state", "app_state", "url", "scope"]


@pytest.mark.parametrize(
    ("base", "ours", "name"),
    [(HttpToolsProtocol, BoundedHttpProtocol, name) for name in HTTP_OVERRIDES]
    + [(WebSocketsSansIOProtocol, BoundedWebSocketProtocol, name) for name in WEBSOCKET_OVERRIDES],
)
def test_every_overridden_method_still_exists_in_uvicorn(base: type, ours: type, name: str) -> None:
    assert name in vars(ours), f"{ours.__name__} no longer overrides {name}: update this list"
    assert callable(getattr(base, name, None)), f"uvicorn's {base.__name__} has no {name}()"


@pytest.mark.parametrize(
    ("base", "name"),
    [(WebSocketsSansIOProtocol, name) for name in WEBSOCKET_ATTRIBUTES]
    + [(HttpToolsProtocol, name) for name in HTTP_ATTRIBUTES],
)
def test_every_attribute_read_is_still_set_by_uvicorn(base: type, name: str) -> None:
    source = inspect.getsource(base)
    assert f"self.{name} =" in source or f"self.{name}:" in source, (
        f"uvicorn's {base.__name__} no longer sets self.{name}"
    )


def test_uvicorn_still_refuses_a_send_after_its_own_close_with_a_runtime_error() -> None:
    """The bounded protocol turns this into the client leg's end (WebSocketDisconnect): if
    uvicorn changes how it says it, the override must follow."""
    source = inspect.getsource(WebSocketsSansIOProtocol.send)
    assert "after sending 'websocket.close'" in source
