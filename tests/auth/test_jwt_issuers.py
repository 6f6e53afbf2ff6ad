"""JWTs of a project's own identity providers: HS256 with a shared secret, RS256 with a JWKS URL,
ES256 with a JWKS file; algorithm pinning, claim checks, leeway, and the JWKS cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from app.auth.key_sets import FetchPolicy
from tests.auth.clients import bearer, handshake
from tests.auth.conftest import (
    AUDIENCE,
    ES_ISSUER,
    HS_ISSUER,
    HS_SECRET,
    RS_ISSUER,
    Keys,
    StartRelay,
    World,
)
from tests.auth.keys import SigningKey, claims, jwks
from tests.auth.servers import AuthServer


def hs256(payload: dict[str, object], secret: str = HS_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


async def test_hs256_jwt_of_a_configured_issuer_is_accepted_with_its_sub_as_user(
    relay: AuthServer,
) -> None:
    result = await handshake(relay, headers=bearer(hs256(claims(HS_ISSUER, AUDIENCE, sub="u-7"))))
    assert result.status == 101
    assert result.principal is not None
    assert result.principal["project"] == "acme"
    assert result.principal["user"] == "u-7"
    assert result.principal["method"] == "jwt"


async def test_rs256_jwt_verified_against_the_jwks_url_is_accepted(
    relay: AuthServer, keys: Keys
) -> None:
    token = keys.rsa.sign(claims(RS_ISSUER, AUDIENCE, sub="rs-user"))
    result = await handshake(relay, query=f"?access_token={token}")
    assert result.status == 101
    assert result.principal is not None
    assert result.principal["user"] == "rs-user"


async def test_es256_jwt_verified_against_the_jwks_file_is_accepted(
    relay: AuthServer, keys: Keys
) -> None:
    token = keys.ec.sign(claims(ES_ISSUER, [AUDIENCE, "other-service"], sub="es-user"))
    result = await handshake(relay, subprotocols=["live-relay", token])
    assert result.status == 101
    assert result.principal is not None
    assert result.principal["user"] == "es-user"


async def test_expired_jwt_is_refused_401_as_expired(relay: AuthServer, keys: Keys) -> None:
    token = keys.rsa.sign(claims(RS_ISSUER, AUDIENCE, lifetime=-5))
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "expired" in result.message


async def test_jwt_not_yet_valid_is_refused_401(relay: AuthServer) -> None:
    token = hs256(claims(HS_ISSUER, AUDIENCE, nbf=int(time.time()) + 60))
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "not valid yet" in result.message


async def test_leeway_accepts_a_jwt_that_expired_moments_ago(
    start_relay: StartRelay, world: World
) -> None:
    relay = start_relay(settings=world.settings(jwt_leeway_seconds=30))
    result = await handshake(relay, headers=bearer(hs256(claims(HS_ISSUER, AUDIENCE, lifetime=-5))))
    assert result.status == 101
    late = await handshake(relay, headers=bearer(hs256(claims(HS_ISSUER, AUDIENCE, lifetime=-60))))
    assert late.status == 401


async def test_jwt_for_another_audience_is_refused_401(relay: AuthServer) -> None:
    result = await handshake(relay, headers=bearer(hs256(claims(HS_ISSUER, "someone-else"))))
    assert result.status == 401
    assert "audience" in result.message


async def test_jwt_of_an_unknown_issuer_is_refused_401(relay: AuthServer) -> None:
    token = hs256(claims("https://stranger.test", AUDIENCE))
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "issuer" in result.message


@pytest.mark.parametrize("missing", ["sub", "exp", "aud"])
async def test_jwt_without_a_required_claim_is_refused_401(relay: AuthServer, missing: str) -> None:
    payload = claims(HS_ISSUER, AUDIENCE)
    del payload[missing]
    result = await handshake(relay, headers=bearer(hs256(payload)))
    assert result.status == 401
    assert missing in result.message


async def test_jwt_with_a_wrong_hs256_secret_is_refused_401(relay: AuthServer) -> None:
    token = hs256(claims(HS_ISSUER, AUDIENCE), secret="another-secret-" + "y" * 32)
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "signature" in result.message


def unsigned(payload: dict[str, object]) -> str:
    def segment(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(payload)}."


@pytest.mark.parametrize("issuer", [HS_ISSUER, RS_ISSUER])
async def test_unsigned_alg_none_jwt_is_refused_401(relay: AuthServer, issuer: str) -> None:
    result = await handshake(relay, headers=bearer(unsigned(claims(issuer, AUDIENCE))))
    assert result.status == 401


async def test_hs256_jwt_signed_with_the_rs256_public_key_is_refused_401(
    relay: AuthServer, keys: Keys
) -> None:
    """The classic key confusion: the public key (which anyone has) used as an HMAC secret."""
    token = _hmac_jwt(claims(RS_ISSUER, AUDIENCE), keys.rsa.public_pem(), keys.rsa.kid)
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401
    assert "RS256" in result.message


def _hmac_jwt(payload: dict[str, object], secret: bytes, kid: str) -> str:
    """An HS256 JWT made by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""

    def segment(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = segment(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = segment(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{segment(signature)}"


async def test_es256_jwt_presented_for_the_rs256_issuer_is_refused_401(
    relay: AuthServer, keys: Keys
) -> None:
    token = keys.ec.sign(claims(RS_ISSUER, AUDIENCE), kid=keys.rsa.kid)
    result = await handshake(relay, headers=bearer(token))
    assert result.status == 401


async def test_jwt_signed_by_an_unpublished_key_is_refused_401(relay: AuthServer) -> None:
    impostor = SigningKey.ec("ec-1")  # same kid as the published EC key, different key
    result = await handshake(relay, headers=bearer(impostor.sign(claims(ES_ISSUER, AUDIENCE))))
    assert result.status == 401
    assert "signature" in result.message


async def test_rotated_key_is_fetched_when_a_token_names_an_unknown_kid(
    relay: AuthServer, world: World, keys: Keys
) -> None:
    first = await handshake(relay, headers=bearer(keys.rsa.sign(claims(RS_ISSUER, AUDIENCE))))
    assert first.status == 101
    assert world.key_server.hits["/jwks.json"] == 1
    world.key_server.publish("/jwks.json", jwks(keys.rsa, keys.rsa_next))
    rotated = keys.rsa_next.sign(claims(RS_ISSUER, AUDIENCE))
    second = await handshake(relay, headers=bearer(rotated))
    assert second.status == 101
    assert world.key_server.hits["/jwks.json"] == 2
    again = await handshake(relay, headers=bearer(rotated))
    assert again.status == 101
    assert world.key_server.hits["/jwks.json"] == 2, "a known kid is served from the cache"


async def test_unknown_kids_cannot_make_the_relay_refetch_more_than_once_per_interval(
    start_relay: StartRelay, world: World, keys: Keys
) -> None:
    relay = start_relay(fetch=FetchPolicy(min_refetch_seconds=60))
    genuine = keys.rsa.sign(claims(RS_ISSUER, AUDIENCE))
    assert (await handshake(relay, headers=bearer(genuine))).status == 101
    for attempt in range(5):
        forged = keys.rsa_next.sign(claims(RS_ISSUER, AUDIENCE), kid=f"random-{attempt}")
        result = await handshake(relay, headers=bearer(forged))
        assert result.status == 401
        assert "does not publish" in result.message
    assert world.key_server.hits["/jwks.json"] == 1


async def test_unreachable_jwks_is_503_until_it_answers_then_tokens_verify(
    relay: AuthServer, world: World, keys: Keys
) -> None:
    token = keys.rsa.sign(claims(RS_ISSUER, AUDIENCE))
    world.key_server.down = True
    unavailable = await handshake(relay, headers=bearer(token))
    assert unavailable.status == 503
    assert unavailable.error is not None
    assert unavailable.error["status"] == "UNAVAILABLE"
    world.key_server.down = False
    assert (await handshake(relay, headers=bearer(token))).status == 101


async def test_known_keys_keep_working_while_the_jwks_is_down(
    relay: AuthServer, world: World, keys: Keys
) -> None:
    token = keys.rsa.sign(claims(RS_ISSUER, AUDIENCE))
    assert (await handshake(relay, headers=bearer(token))).status == 101
    world.key_server.down = True
    assert (await handshake(relay, headers=bearer(token))).status == 101
    unknown = keys.rsa_next.sign(claims(RS_ISSUER, AUDIENCE))
    assert (await handshake(relay, headers=bearer(unknown))).status == 401


async def test_jwt_garbage_is_refused_401(relay: AuthServer) -> None:
    for garbage in ["a.b.c", "not-a-token", "eyJhbGciOiJIUzI1NiJ9.e30", "..."]:
        result = await handshake(relay, headers=bearer(garbage))
        assert result.status == 401, garbage
