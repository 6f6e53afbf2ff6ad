"""Random headers, query strings, subprotocols, tokens and token requests thrown at the relay:
never a 500, never a crash, and never an accepted session without a valid credential."""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.auth.conftest import (
    ACME_KEY,
    AUDIENCE,
    DORMANT_KEY,
    GUARDED_KEY,
    HS_ISSUER,
    HS_SECRET,
    ORIGIN,
)
from tests.auth.keys import claims
from tests.auth.servers import AuthServer, ErrorRecorder

VALID_JWT = jwt.encode(claims(HS_ISSUER, AUDIENCE, lifetime=3600), HS_SECRET, algorithm="HS256")
# Credentials that may start a session (in the right place, alone, from an allowed origin).
ACCEPTABLE = (ACME_KEY, VALID_JWT)
KNOWN = [
    *ACCEPTABLE,
    GUARDED_KEY,
    DORMANT_KEY,
    jwt.encode(claims(HS_ISSUER, AUDIENCE, lifetime=-60), HS_SECRET, algorithm="HS256"),
    jwt.encode(claims("https://securetoken.google.com/x", "x"), HS_SECRET, algorithm="HS256"),
    jwt.encode(claims("live-relay", "live-relay/v1/live"), HS_SECRET, algorithm="HS256"),
    "lr_",
    "a.b.c",
    "..",
    "eyJhbGciOiJub25lIn0.e30.",
]
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "
TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"

text = st.text(alphabet=PRINTABLE, max_size=120)
credential = st.one_of(
    st.sampled_from(KNOWN),
    text,
    st.lists(st.text(alphabet=TOKEN_CHARS, max_size=40), min_size=3, max_size=3).map(".".join),
)
header_value = st.one_of(credential, credential.map(lambda c: f"Bearer {c}"), text)
header_name = st.sampled_from(
    ["authorization", "x-goog-api-key", "origin", "x-firebase-appcheck", "cookie", "x-api-key"]
)
headers = st.lists(st.tuples(header_name, header_value.map(str.strip)), max_size=4)
query_name = st.one_of(st.sampled_from(["access_token", "key", "app_check", "alt"]), text)
query = st.lists(st.tuples(query_name, credential), max_size=4).map(
    lambda pairs: "?" + urlencode(pairs) if pairs else ""
)
subprotocol = st.one_of(
    st.just("live-relay"),
    st.sampled_from(KNOWN),
    st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=60),
)
subprotocols = st.one_of(st.none(), st.lists(subprotocol, min_size=1, max_size=3, unique=True))
origin = st.one_of(st.none(), st.just(ORIGIN), text)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["uses", "expireTime", "newSessionExpireTime", "lockedSetup", "user", "model", "x"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


@pytest.fixture
def errors() -> Iterator[ErrorRecorder]:
    recorder = ErrorRecorder()
    logging.getLogger().addHandler(recorder)
    try:
        yield recorder
    finally:
        logging.getLogger().removeHandler(recorder)


def attempt(
    relay: AuthServer,
    query: str,
    headers: list[tuple[str, str]],
    subprotocols: list[str] | None,
) -> tuple[int, Any]:
    """(101, principal) or (status, body) of one handshake. Any other end (no HTTP answer, an
    answer the client cannot parse) raises: the relay owes every request an HTTP answer."""
    try:
        with connect(
            relay.ws_url + query,
            additional_headers=headers,
            subprotocols=[Subprotocol(s) for s in subprotocols] if subprotocols else None,
            open_timeout=5,
        ) as websocket:
            return 101, json.loads(websocket.recv(timeout=5))
    except InvalidStatus as refusal:
        response = refusal.response
        if response.headers.get("content-type") == "application/json":
            return response.status_code, json.loads(response.body or b"null")
        return response.status_code, response.body


# One server for every example: each example is a new connection and the server keeps no
# per-connection state worth resetting, so a fresh server per example would only cost time.
FUZZ_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ_SETTINGS
@given(query=query, headers=headers, subprotocols=subprotocols, origin=origin)
def test_random_handshakes_never_crash_and_never_admit_without_a_valid_credential(
    relay: AuthServer,
    errors: ErrorRecorder,
    query: str,
    headers: list[tuple[str, str]],
    subprotocols: list[str] | None,
    origin: str | None,
) -> None:
    if origin is not None:
        headers = [*headers, ("origin", origin)]
    status, answer = attempt(relay, query, headers, subprotocols)
    assert status in (101, 400, 401, 403), (status, answer)
    request_text = query + repr(headers) + repr(subprotocols)
    if status == 101:
        assert any(c in request_text or c.replace(".", "%2E") in request_text for c in ACCEPTABLE)
        assert answer["project"] == "acme"
    if status in (401, 403):
        assert set(answer["error"]) == {"code", "status", "message"}
        assert answer["error"]["code"] == status
        for secret in KNOWN[:4]:
            assert secret not in answer["error"]["message"]
    assert not errors.records, [r.getMessage() for r in errors.records]


@pytest.fixture
def http(relay: AuthServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=relay.http_url, timeout=5) as client:
        yield client


@FUZZ_SETTINGS
@given(body=json_values, headers=headers)
def test_random_token_requests_never_crash(
    http: httpx.Client, errors: ErrorRecorder, body: Any, headers: list[tuple[str, str]]
) -> None:
    response = http.post(
        "/v1/tokens",
        headers=[("authorization", f"Bearer {ACME_KEY}"), *headers],
        content=json.dumps(body).encode(),
    )
    assert response.status_code in (200, 400, 401, 403), response.text
    assert "error" in response.json() or "token" in response.json()
    assert not errors.records, [r.getMessage() for r in errors.records]
