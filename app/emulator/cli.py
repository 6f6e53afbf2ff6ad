"""`live-relay emulator`: run the offline Live API emulator on its own until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys

from app.emulator.config import DEFAULT_KNOWN_MODELS, EmulatorConfig
from app.emulator.server import Emulator

# The command line's defaults are the config's, so the two cannot drift apart.
_DEFAULTS = EmulatorConfig()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (0: any free port)")
    parser.add_argument("--tls-cert", help="PEM certificate: serve wss:// instead of ws://")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--require-token", help="accept only `Authorization: Bearer TOKEN` (default: any)"
    )
    parser.add_argument(
        "--known-models",
        default=",".join(DEFAULT_KNOWN_MODELS),
        help="comma-separated model ids the emulator accepts",
    )
    parser.add_argument(
        "--connection-lifetime",
        type=float,
        default=_DEFAULTS.connection_lifetime_seconds,
        help="seconds before the emulator ends a connection (goAway comes before)",
    )
    parser.add_argument(
        "--goaway-notice",
        type=float,
        default=_DEFAULTS.goaway_notice_seconds,
        help="seconds of notice goAway gives",
    )
    parser.add_argument(
        "--echo-audio",
        action="store_true",
        help="load-test mode: answer every audio chunk at once with the same audio",
    )
    # Where sources on Vertex disagree (docs/emulator-fidelity.md), the other choice.
    parser.add_argument(
        "--resume-while-open",
        choices=("allow", "refuse"),
        default=_DEFAULTS.resume_while_open,
        help="resuming a handle whose connection is still open: allow, or refuse with 1011",
    )
    parser.add_argument(
        "--consumed-index-counting",
        choices=("per_connection", "per_session"),
        default=_DEFAULTS.consumed_index_counting,
        help="how lastConsumedClientMessageIndex counts (setup is 0 per connection by default)",
    )
    parser.add_argument(
        "--audio-stream-end",
        choices=("refuse", "accept"),
        default=_DEFAULTS.audio_stream_end,
        help="realtimeInput.audioStreamEnd: refuse (1007, as Vertex) or accept (Gemini API)",
    )
    parser.add_argument(
        "--audio-session-cap",
        type=float,
        default=_DEFAULTS.audio_session_cap_seconds or 0,
        help="seconds an uncompressed session with audio may last (0: no cap)",
    )
    parser.add_argument(
        "--video-session-cap",
        type=float,
        default=_DEFAULTS.video_session_cap_seconds or 0,
        help="seconds an uncompressed session with video may last (0: no cap)",
    )
    parser.add_argument(
        "--deadline-close",
        type=float,
        default=_DEFAULTS.deadline_close_seconds or 0,
        help="seconds after which a connection is closed 1011 Deadline expired (0: never)",
    )
    parser.add_argument(
        "--resume-after-deadline",
        choices=("allow", "refuse"),
        default=_DEFAULTS.resume_after_deadline,
        help="resuming a conversation closed at that deadline: allow, or refuse with 1007",
    )
    parser.add_argument(
        "--search-with-function-calling",
        choices=("refuse", "allow"),
        default=_DEFAULTS.search_with_function_calling,
        help="a search tool beside function declarations: refuse (1007, as Vertex) or allow",
    )


def run(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    ssl_context = None
    if args.tls_cert is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    asyncio.run(_serve(Emulator(config_from(args)), args.host, args.port, ssl_context))
    return 0


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig that the parsed command line asks for."""
    return EmulatorConfig(
        known_models=tuple(m.strip() for m in args.known_models.split(",") if m.strip()),
        require_token=args.require_token,
        connection_lifetime_seconds=args.connection_lifetime,
        goaway_notice_seconds=min(args.goaway_notice, args.connection_lifetime),
        echo_audio=args.echo_audio,
        resume_while_open=args.resume_while_open,
        consumed_index_counting=args.consumed_index_counting,
        audio_stream_end=args.audio_stream_end,
        audio_session_cap_seconds=args.audio_session_cap or None,
        video_session_cap_seconds=args.video_session_cap or None,
        deadline_close_seconds=args.deadline_close or None,
        resume_after_deadline=args.resume_after_deadline,
        search_with_function_calling=args.search_with_function_calling,
    )


async def _serve(
    emulator: Emulator, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await emulator.start(host, port, ssl_context)
    print(f"live-relay emulator listening on {emulator.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.stop()
