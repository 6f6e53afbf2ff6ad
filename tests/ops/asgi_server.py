"""Serve a plain ASGI app (no lifespan, no logging config) for the ops tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from tests.support.asgi import serving as serving_config


@asynccontextmanager
async def serving(
    app: ASGIApp, *, cert_file: Path | None = None, key_file: Path | None = None
) -> AsyncIterator[int]:
    """Run `app` until the block ends; yields the port (https when a certificate is given)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_config=None,
        ssl_certfile=str(cert_file) if cert_file else None,
        ssl_keyfile=str(key_file) if key_file else None,
    )
    async with serving_config(config) as port:
        yield port
