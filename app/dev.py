"""`live-relay dev`: the relay, the in-process emulator and a dev key, ready for the SDK."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from app.auth.keys import API_KEY_PREFIX, is_api_key
from app.devcert import ensure_dev_certificate
from app.exit_status import ExitStatus
from app.ledger.store import DEV_LEDGER_URL
from app.ports import said_cannot_listen
from app.serve import add_server_arguments, overrides_from, public_url, refuse, serve
from app.settings import Settings, SettingsError, load_settings
from app.startup import StartupError, preflight, settings_problems

DEV_CERT_DIR = Path(".live-relay/dev-tls")


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument("--api-key", help="use this dev API key instead of a generated one")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="serve ws:// instead of wss:// (browsers on localhost; the Python SDK needs wss://)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines for a person at a terminal (default) or JSON, as `serve` writes them",
    )


def run(args: argparse.Namespace) -> int:
    if args.api_key is not None and not is_api_key(args.api_key):
        print(
            f"live-relay: --api-key must start with `{API_KEY_PREFIX}` (keys without it are "
            "read as JWTs and refused on every request); try --api-key lr_dev_mykey",
            file=sys.stderr,
        )
        return ExitStatus.SETTINGS
    api_key = args.api_key or "lr_dev_" + secrets.token_urlsafe(24)
    overrides = overrides_from(args, ("host", "port", "tls_cert_file", "tls_key_file"))
    ca_file: Path | None = None
    if not args.plain and "tls_cert_file" not in overrides:
        dev_tls = ensure_dev_certificate(DEV_CERT_DIR)
        overrides |= {"tls_cert_file": dev_tls.cert_file, "tls_key_file": dev_tls.key_file}
        ca_file = dev_tls.ca_file
    try:
        settings = load_settings(
            **overrides,
            upstream="emulator",
            workers=1,
            api_keys=(api_key,),
            # Pages on any localhost port may connect: credentials here are explicit keys,
            # never cookies, so a foreign page gains nothing without the key.
            allowed_origins=("*",),
            token_signing_key=secrets.token_urlsafe(32),
            demo_page=True,
            # One port on a laptop: /metrics beside the relay, unprotected.
            metrics_on_client_port=True,
            log_format=args.log_format,
        )
        preflight(settings, open_metrics=True)
    except SettingsError as exc:
        return refuse(settings_problems(exc))
    except StartupError as exc:
        return refuse(exc.problems)
    if settings.ledger_url is None:
        settings = settings.model_copy(update={"ledger_url": DEV_LEDGER_URL})
    listen = '--port {port} (make run ARGS="--port {port}")'
    return said_cannot_listen(settings.host, settings.port, option=listen) or serve(
        settings, announce=lambda s, port: banner(s, port, api_key, ca_file)
    )


def banner(settings: Settings, port: int, api_key: str, ca_file: Path | None) -> str:
    url = public_url(settings, port)
    page = url.replace("ws", "http", 1).removesuffix("/v1/live")
    trust = "" if ca_file is None else " (trust the CA below, or run with --plain)"
    head = f"""\
live-relay dev: relay on {url} (upstream: in-process offline emulator)
API key: {api_key}
Browser demo: {page}/#key={api_key}{trust}
"""
    if ca_file is None:
        return head + plain_snippet(url, api_key, page)
    return head + f"Dev CA: {ca_file.resolve()}\n" + python_snippet(url, api_key, ca_file)


def python_snippet(url: str, api_key: str, ca_file: Path) -> str:
    return f"""
Paste into Python (pip install google-genai):

import asyncio, ssl
from google import genai

client = genai.Client(vertexai=True, http_options={{
        "base_url": "{url}",
        "headers": {{"Authorization": "Bearer {api_key}"}},
        "async_client_args": {{"ssl": ssl.create_default_context(cafile="{ca_file.resolve()}")}},
}})

async def main() -> None:
    async with client.aio.live.connect(
        model="gemini-live-2.5-flash", config={{"response_modalities": ["TEXT"]}}
    ) as session:
        await session.send_client_content(
            turns={{"role": "user", "parts": [{{"text": "Hello"}}]}}, turn_complete=True
        )
        async for message in session.receive():
            if message.text:
                print(message.text, end="")
    print()

asyncio.run(main())
"""


def plain_snippet(url: str, api_key: str, page: str) -> str:
    """For ws://, which the google-genai SDKs refuse (they always pass TLS settings): a plain
    WebSocket, as a page has, that prints the reply and closes."""
    return f"""
The google-genai SDKs need wss:// (run without --plain for a Python snippet).
Paste into the browser console on {page}/ (or save as hello.mjs and run with Node.js 22+):

const ws = new WebSocket("{url}?access_token={api_key}");
ws.binaryType = "arraybuffer";
ws.onopen = () => ws.send(JSON.stringify({{ setup: {{
  model: "gemini-live-2.5-flash", generationConfig: {{ responseModalities: ["TEXT"] }} }} }}));
let reply = "";
ws.onmessage = (event) => {{
  const message = JSON.parse(new TextDecoder().decode(event.data));
  if (message.setupComplete) ws.send(JSON.stringify({{ clientContent: {{
    turns: [{{ role: "user", parts: [{{ text: "Hello" }}] }}], turnComplete: true }} }}));
  for (const part of message.serverContent?.modelTurn?.parts ?? []) reply += part.text ?? "";
  if (message.serverContent?.turnComplete) {{
    console.log(reply);
    ws.close();
  }}
}};
"""
