"""API keys in every place a credential may travel, and every way a request is refused."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from app.auth.credentials import RELAY_SUBPROTOCOL
from tests.auth.clients import bearer, handshake
from tests.auth.conftest import ACME_KEY, DORMANT_KEY, ORIGIN
from tests.auth.servers import AuthServer

ACME_PRINCIPAL: dict[str, object] = {
    "project": "acme",
    "user": None,
    "method": "api_key",
    "forced_setup": {},
    "expires_at": None,
}


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", bearer(ACME_KEY)),
        ("", {"Authorization": f"bearer   {ACME_KEY}"}),
        ("", {"x-goog-api-key": ACME_KEY}),
        (f"?access_token={ACME_KEY}", {}),
        (f"?key={ACME_KEY}", {}),
        (f"?alt=json&key={ACME_KEY}", {}),
        (f"?access_token=auth_tokens/{ACME_KEY}", {}),
        (
            "",  # the Python SDK's ephemeral-token form: the same token in both headers
            {
                "Authorization": f"Token auth_tokens/{ACME_KEY}",
                "x-goog-api-key": f"auth_tokens/{ACME_KEY}",
            },
        ),
    ],
    ids=[
        "bearer",
        "bearer-any-case",
        "x-goog-api-key",
        "access_token",
        "key",
        "among-others",
        "js-sdk-auth-tokens",
        "python-sdk-token-scheme",
    ],
)
async def test_api_key_is_accepted_from_every_header_and_query_parameter(
    relay: AuthServer, query: str, headers: dict[str, str]
) -> None:
    result = await handshake(relay, query=query, headers=headers)
    assert result.status == 101
    assert result.principal == ACME_PRINCIPAL


async def test_api_key_as_second_subprotocol_is_accepted_and_only_ours_is_echoed(
    relay: AuthServer,
) -> None:
    result = await handshake(relay, subprotocols=[RELAY_SUBPROTOCOL, ACME_KEY])
    assert result.status == 101
    assert result.principal == ACME_PRINCIPAL
    assert result.subprotocol == RELAY_SUBPROTOCOL


async def test_same_key_in_two_places_is_one_credential(relay: AuthServer) -> None:
    result = await handshake(relay, query=f"?key={ACME_KEY}", headers={"x-goog-api-key": ACME_KEY})
    assert result.status == 101


async def test_request_without_credential_is_refused_401_naming_where_to_put_one(
    relay: AuthServer,
) -> None:
    result = await handshake(relay)
    assert result.status == 401
    assert result.error is not None
    assert result.error["status"] == "UNAUTHENTICATED"
    assert result.error["code"] == 401
    assert "Authorization: Bearer" in result.message


async def test_token_offered_before_our_subprotocol_is_not_a_credential(
    relay: AuthServer,
) -> None:
    result = await handshake(relay, subprotocols=[ACME_KEY, RELAY_SUBPROTOCOL])
    assert result.status == 401


async def test_unknown_api_key_is_refused_401_without_echoing_it(relay: AuthServer) -> None:
    wrong = ACME_KEY[:-4] + "AAAA"
    result = await handshake(relay, headers=bearer(wrong))
    assert result.status == 401
    assert "not recognised" in result.message
    assert wrong not in str(result.error)


async def test_two_different_credentials_are_refused_401(relay: AuthServer) -> None:
    result = await handshake(relay, query="?key=lr_other", headers=bearer(ACME_KEY))
    assert result.status == 401
    assert "more than one credential" in result.message
    assert ACME_KEY not in result.message


async def test_repeated_query_parameter_with_different_values_is_refused_401(
    relay: AuthServer,
) -> None:
    result = await handshake(relay, query="?" + urlencode([("key", ACME_KEY), ("key", "lr_x")]))
    assert result.status == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Basic {ACME_KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": "Token auth_tokens/"},
        {"x-goog-api-key": ""},
    ],
    ids=["basic-scheme", "bearer-without-token", "token-scheme-without-token", "empty-key"],
)
async def test_malformed_credential_is_refused_401(
    relay: AuthServer, headers: dict[str, str]
) -> None:
    result = await handshake(relay, headers=headers)
    assert result.status == 401
    assert ACME_KEY not in result.message


@pytest.mark.parametrize("origin", [ORIGIN, "HTTPS://APP.ACME.TEST:443", "capacitor://localhost"])
async def test_request_from_an_allowed_origin_is_accepted(relay: AuthServer, origin: str) -> None:
    result = await handshake(relay, query=f"?key={ACME_KEY}", headers={"Origin": origin})
    assert result.status == 101


@pytest.mark.parametrize(
    "origin",
    ["https://evil.test", "https://app.acme.test.evil.test", "http://app.acme.test", "null"],
)
async def test_request_from_another_origin_is_refused_403(relay: AuthServer, origin: str) -> None:
    result = await handshake(relay, query=f"?key={ACME_KEY}", headers={"Origin": origin})
    assert result.status == 403
    assert result.error is not None
    assert result.error["status"] == "PERMISSION_DENIED"
    assert "allowed_origins" in result.message


async def test_disabled_project_is_refused_403(relay: AuthServer) -> None:
    result = await handshake(relay, headers=bearer(DORMANT_KEY))
    assert result.status == 403
    assert "disabled" in result.message
