"""A bare passthrough on the relay's stack: the yardstick for what the relay's features cost.

FastAPI under uvicorn (uvloop, httptools, the chosen WebSocket implementation) facing the
client, the `websockets` asyncio client facing the upstream, two pumps, nothing else: no auth,
quota, metrics, timers or parsing. `live-relay serve` is this plus every feature, so the ratio
of their CPU per frame is the price of the features.

    python -m tests.bench.passthrough --port 8001 --upstream ws://127.0.0.1:9000/ws/...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets", "wsproto")


def create_app(upstream_url: str, *, upstream_deflate: bool = False) -> FastAPI:
    app = FastAPI()

    @app.websocket("/v1/live")
    async def live(client: WebSocket) -> None:
        await client.accept()
        async with connect(
            upstream_url,
            compression="deflate" if upstream_deflate else None,
            proxy=None,
            max_size=None,
        ) as upstream:
            pumps = [
                asyncio.create_task(_client_to_upstream(client, upstream)),
                asyncio.create_task(_upstream_to_client(upstream, client)),
            ]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await client.close(1000)

    return app


async def _client_to_upstream(client: WebSocket, upstream: ClientConnection) -> None:
    receive, send = client.receive, upstream.send
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        frame: str | bytes | None = message.get("bytes")
        await send(message["text"] if frame is None else frame)


async def _upstream_to_client(upstream: ClientConnection, client: WebSocket) -> None:
    send = client.send
    with contextlib.suppress(ConnectionClosed):
        async for frame in upstream:
            if isinstance(frame, bytes):
                await send({"type": "websocket.send", "bytes": frame})
            else:
                await send({"type": "websocket.send", "text": frame})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's full Live URL")
    parser.add_argument("--ws", choices=WS_IMPLEMENTATIONS, default="websockets-sansio")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--client-deflate", action="store_true")
    parser.add_argument("--upstream-deflate", action="store_true")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream, upstream_deflate=args.upstream_deflate),
        host=args.host,
        port=args.port,
        loop=args.loop,
        http="httptools",
        ws=args.ws,
        ws_per_message_deflate=args.client_deflate,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
