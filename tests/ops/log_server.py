"""A small app under uvicorn with the relay's logging configuration, for log tests.

`python -m tests.ops.log_server PORT`; the log format and level come from RELAY_* variables.
GET /hello logs an info and a warning line; the WebSocket at /ws sets a session id, accepts,
logs, closes.
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from app.logs import configure_logging, session_id_var
from app.settings import load_settings

SESSION_ID = "sess-42"
logger = logging.getLogger("app.log_server")


async def hello(request: Request) -> PlainTextResponse:
    logger.info("hello handled", extra={"project": "demo"})
    logger.warning("hello warned")
    return PlainTextResponse("hello")


async def session(websocket: WebSocket) -> None:
    session_id_var.set(SESSION_ID)
    await websocket.accept()
    logger.info("session started")
    await websocket.close(1000)


def main(port: int) -> None:
    app = Starlette(routes=[Route("/hello", hello), WebSocketRoute("/ws", session)])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        http="httptools",
        ws="websockets-sansio",
        log_config=configure_logging(load_settings()),
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
