"""Firebase ID tokens (checked by google-auth against certificates served locally) and Firebase
App Check tokens (checked against a local App Check JWKS) required by a project."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.auth.firebase import APP_CHECK_ISSUER_PREFIX
from tests.auth.clients import bearer, handshake
from tests.auth.conftest import (
    APP_CHECK_PROJECT_NUMBER,
    APP_ID,
    FIREBASE_PROJECT,
    GUARDED_KEY,
    Keys,
    World,
)
from tests.auth.keys import SigningKey, claims
from tests.auth.servers import AuthServer


def id_token_claims(project: str = FIREBASE_PROJECT, **overrides: Any) -> dict[str, Any]:
    values = claims(
        f"https://securetoken.google.com/{project}",
        project,
        sub="firebase-uid-1",
        auth_time=int(time.time()) - 60,
    )
    return {**values, **overrides}


def app_check_token(key: SigningKey, *, app_id: str = APP_ID, **overrides: Any) -> str:
    values = claims(
        APP_CHECK_ISSUER_PREFIX + APP_CHECK_PROJECT_NUMBER,
        [f"projects/{APP_CHECK_PROJECT_NUMBER}", "projects/acme-firebase"],
        sub=app_id,
    )
    return key.sign({**values, **overrides})


async def test_firebase_id_token_is_accepted_with_the_firebase_uid_as_user(
    relay: AuthServer, keys: Keys, world: World
) -> None:
    result = await handshake(relay, headers=bearer(keys.firebase.sign(id_token_claims())))
    assert result.status == 101
    assert result.principal is not None
    assert result.principal["project"] == "acme"
    assert result.principal["user"] == "firebase-uid-1"
    assert result.principal["method"] == "firebase"
    assert world.key_server.hits["/firebase-certs"] == 1


async def test_certificates_are_cached_between_id_tokens(
    relay: AuthServer, keys: Keys, world: World
) -> None:
    for _ in range(3):
        token = keys.firebase.sign(id_token_claims())
        assert (await handshake(relay, query=f"?access_token={token}")).status == 101
    assert world.key_server.hits["/firebase-certs"] == 1


async def test_id_token_of_a_firebase_project_no_project_accepts_is_refused_401(
    relay: AuthServer, keys: Keys
) -> None:
    token = keys.firebase.sign(id_token_claims(project="someone-elses-app"))
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "Firebase project" in result.message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"aud": "someone-elses-app"}, "does not verify"),
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"auth_time": int(time.time()) + 3600}, "auth_time"),
        ({"sub": ""}, "sub"),
    ],
    ids=["wrong-audience", "expired", "future-auth-time", "empty-sub"],
)
async def test_invalid_id_token_is_refused_401(
    relay: AuthServer, keys: Keys, overrides: dict[str, Any], expected: str
) -> None:
    result = await handshake(
        relay, headers=bearer(keys.firebase.sign(id_token_claims(**overrides)))
    )
    assert result.status == 401
    assert expected in result.message


async def test_id_token_signed_by_a_key_google_does_not_publish_is_refused_401(
    relay: AuthServer,
) -> None:
    impostor = SigningKey.rsa("firebase-1")
    result = await handshake(relay, headers=bearer(impostor.sign(id_token_claims())))
    assert result.status == 401


async def test_id_token_not_signed_rs256_is_refused_401(relay: AuthServer) -> None:
    token = SigningKey.ec("firebase-1").sign(id_token_claims())
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "RS256" in result.message


async def test_project_requiring_app_check_refuses_a_request_without_it_401(
    relay: AuthServer,
) -> None:
    result = await handshake(relay, headers=bearer(GUARDED_KEY))
    assert result.status == 401
    assert "App Check" in result.message


async def test_app_check_token_in_header_or_query_admits_the_request(
    relay: AuthServer, keys: Keys
) -> None:
    token = app_check_token(keys.app_check)
    by_header = await handshake(
        relay, headers={**bearer(GUARDED_KEY), "X-Firebase-AppCheck": token}
    )
    assert by_header.status == 101
    assert by_header.principal is not None
    assert by_header.principal["project"] == "guarded"
    by_query = await handshake(relay, query=f"?key={GUARDED_KEY}&app_check={token}")
    assert by_query.status == 101


async def test_app_check_token_of_an_app_not_on_the_list_is_refused_403(
    relay: AuthServer, keys: Keys
) -> None:
    token = app_check_token(keys.app_check, app_id="1:123456789:web:other")
    result = await handshake(relay, headers={**bearer(GUARDED_KEY), "X-Firebase-AppCheck": token})
    assert result.status == 403
    assert "app" in result.message


@pytest.mark.parametrize(
    "make",
    [
        lambda keys: app_check_token(keys.app_check, exp=int(time.time()) - 10),
        lambda keys: app_check_token(keys.app_check, aud=["projects/999"]),
        lambda keys: app_check_token(keys.app_check, iss=APP_CHECK_ISSUER_PREFIX + "999"),
        lambda keys: app_check_token(SigningKey.rsa("app-check-1")),
        lambda keys: "not-a-jwt",
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "unpublished-key", "garbage"],
)
async def test_invalid_app_check_token_is_refused_401(
    relay: AuthServer, keys: Keys, make: Any
) -> None:
    result = await handshake(
        relay, headers={**bearer(GUARDED_KEY), "X-Firebase-AppCheck": make(keys)}
    )
    assert result.status == 401
    assert "App Check" in result.message


async def test_app_check_is_not_required_by_projects_that_do_not_ask_for_it(
    relay: AuthServer, keys: Keys
) -> None:
    token = keys.firebase.sign(id_token_claims())
    assert (await handshake(relay, headers=bearer(token))).status == 101
