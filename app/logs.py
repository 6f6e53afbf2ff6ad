"""Log lines on stdout: JSON by default, plain text with `RELAY_LOG_FORMAT=text`.

One line when a session starts, one when it ends, and errors: never one per frame, never a
frame payload, never a secret. Every line written while `session_id_var` is set carries that
session's id, so all lines of one session can be found together.

Tokens travel in query strings (`?access_token=`, `?key=`), because browsers cannot set headers
on a WebSocket, and uvicorn writes the path with its query string both in its access lines and
in its WebSocket handshake lines (on `uvicorn.error`). The values in those query strings are
replaced by `REDACTED` before any line is formatted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.settings import Settings

session_id_var: ContextVar[str | None] = ContextVar("relay_session_id", default=None)

REDACTED = "REDACTED"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# uvicorn adds an ANSI-coloured copy of some messages for its own console formatter.
_DROPPED_EXTRAS = frozenset({"color_message"})


def hash_user(user: str | None) -> str | None:
    """A short stable pseudonym for a user id, so logs can group a user's sessions.

    The same user gets the same value on every replica and across restarts. It is a
    pseudonym, not anonymity: whoever can guess a user id can compute its hash.
    """
    if user is None:
        return None
    return hashlib.sha256(b"live-relay user:" + user.encode()).hexdigest()[:16]


# The user information of an absolute URL (`http://user:secret@host/...`) anywhere in a target,
# also percent-encoded as uvicorn logs it (`http%3A//user%3Asecret%40host/...`).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*(?::|%3[Aa])//)[^/?#\s\"]*(?:@|%40)")

# Characters that would end a text log line, or restyle a terminal, if written as they are:
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`): one log
    record stays one line, whatever a client put in a name or a reason."""
    return text.translate(_CONTROL_ESCAPES)


def _may_carry_credentials(text: str) -> bool:
    """Whether a uvicorn argument may be a request target carrying credentials."""
    return "?" in text or "@" in text or "%40" in text


def redact_target(target: str) -> str:
    """A request target in any form (`/p?q`, `*?q`, `http://user:pw@host/p?q`, and these
    percent-encoded) without the credentials it may carry: query values and user information
    become `REDACTED`."""
    return redact_query(_USERINFO.sub(rf"\1{REDACTED}@", target))


def redact_query(path: str) -> str:
    """`/v1/live?access_token=abc&x` -> `/v1/live?access_token=REDACTED&REDACTED`."""
    path_only, question_mark, query = path.partition("?")
    if not question_mark:
        return path
    parameters = []
    for parameter in query.split("&"):
        name, equals, _ = parameter.partition("=")
        parameters.append(f"{name}={REDACTED}" if equals else REDACTED)
    return f"{path_only}?{'&'.join(parameters)}"


class RedactQueryFilter(logging.Filter):
    """Redact credentials in the request-target arguments of uvicorn's lines.

    uvicorn passes the request target as a `%s` argument, in whatever form the client sent it:
    `/v1/live?key=...`, but also `*?key=...` (an OPTIONS request) or an absolute URL. Every
    argument with a query or user information is treated as one; the others (the client's
    address, the method, the status) have neither and keep their text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_target(arg) if isinstance(arg, str) and _may_carry_credentials(arg) else arg
                for arg in record.args
            )
        return True


class WireTraceFilter(logging.Filter):
    """Drop the websockets library's wire traces from uvicorn's logger.

    At debug level the protocol logs every handshake header (`< Authorization: Bearer …`,
    `< Sec-WebSocket-Protocol: live-relay, <token>`) and every frame with its payload
    (`> TEXT '{"realtimeInput": …'`): secrets and frame payloads, one line per frame. Those lines
    start with `<`, `>` or `=` followed by a space.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg[:2] in ("< ", "> ", "= "))


class RefusedHandshakeNoiseFilter(logging.Filter):
    """Drop uvicorn's false alarm after the relay refuses a WebSocket handshake.

    uvicorn's websockets-sansio protocol logs "ASGI callable returned without completing
    handshake." at ERROR level even when the app answered the handshake with an HTTP denial
    (401/403/503 with a JSON body), which the relay does for every refused client. The refusal
    itself is logged by the relay; this line would only page someone for nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "ASGI callable returned without completing handshake."


class ConnectionStateNoiseFilter(logging.Filter):
    """Drop the `websockets` protocol's "connection open" and "connection closed" lines.

    uvicorn's websockets-sansio protocol hands its logger to the library, which logs both at
    INFO for every client connection. They repeat uvicorn's handshake line and the session's
    own start and end lines and carry nothing else; in a connection storm they were a third of
    the CPU the relay spent logging per session.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # A tuple, compared by equality: a record's msg may be any object, even unhashable.
        return record.msg not in ("connection open", "connection closed")


class SessionFilter(logging.Filter):
    """Stamp the current session id (from `session_id_var`) on every record as `session`.

    A filter rather than the formatter reads the variable, because filters run in the task
    that logged, where the context holds that task's session.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        session = session_id_var.get()
        if session is not None and not hasattr(record, "session"):
            record.session = session
        return True


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: value
        for name, value in vars(record).items()
        if name not in _RECORD_ATTRIBUTES and name not in _DROPPED_EXTRAS
    }


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid, every `extra` field, and `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # tells workers apart when RELAY_WORKERS > 1
        }
        for name, value in _extra_fields(record).items():
            entry.setdefault(name, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot encode (a Path, an enum) still gets logged.
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...`, with a traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{name}={_text_value(value)}" for name, value in _extra_fields(record).items()
        )
        message = escape_controls(record.getMessage())
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {message}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(char.isspace() for char in text):
        return json.dumps(text, ensure_ascii=False).translate(_CONTROL_ESCAPES)
    return escape_controls(text)


def configure_logging(settings: Settings) -> dict[str, Any]:
    """The logging configuration (`logging.config.dictConfig` schema) for the relay.

    It covers uvicorn's own loggers, so pass it as uvicorn's `log_config`: uvicorn applies it in
    the server process and again in every worker it spawns. Nothing is applied here.
    """
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "session": {"()": SessionFilter},
            "redact_query": {"()": RedactQueryFilter},
            "refused_handshake_noise": {"()": RefusedHandshakeNoiseFilter},
            "wire_trace": {"()": WireTraceFilter},
            "connection_state_noise": {"()": ConnectionStateNoiseFilter},
        },
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": settings.log_format,
                "filters": ["session"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level, "propagate": False},
            # WebSocket handshake lines ("WebSocket /v1/live?access_token=..." [accepted]).
            "uvicorn.error": {
                "level": level,
                "filters": [
                    "connection_state_noise",
                    "redact_query",
                    "refused_handshake_noise",
                    "wire_trace",
                ],
            },
            # The upstream leg's client logs its handshake (with the Google bearer token) and
            # every frame at debug level: never below INFO, whatever RELAY_LOG_LEVEL says.
            "websockets": {"level": "INFO" if level == "DEBUG" else level},
            "uvicorn.access": {
                "handlers": ["stdout"],
                "level": level,
                "propagate": False,
                "filters": ["redact_query"],
            },
        },
        "root": {"handlers": ["stdout"], "level": level},
    }
