"""Relay-issued session tokens: minting with `POST /v1/tokens`, narrowing, locked setup fields,
use counts (across replicas, in Redis), deadlines, and forgeries."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from app.auth.credentials import RELAY_SUBPROTOCOL
from app.quota.store import open_quota_store
from tests.auth.clients import bearer, handshake, mint, mint_token
from tests.auth.conftest import (
    ACME_KEY,
    AUDIENCE,
    DORMANT_KEY,
    HS_ISSUER,
    HS_SECRET,
    ORIGIN,
    TOKEN_SIGNING_KEY,
    StartRelay,
    World,
)
from tests.auth.keys import claims
from tests.auth.servers import AuthServer
from tests.support.redis_server import RedisServer


def rfc3339(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_minted_token_has_googles_defaults_and_is_not_cached(relay: AuthServer) -> None:
    before = time.time()
    response = await mint(relay, bearer(ACME_KEY), {"uses": 1})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "expireTime", "newSessionExpireTime", "uses"}
    assert body["uses"] == 1
    assert body["expireTime"].endswith("Z")
    assert before + 1795 <= parse_time(body["expireTime"]) <= before + 1801
    assert before + 55 <= parse_time(body["newSessionExpireTime"]) <= before + 61


async def test_browser_starts_a_session_with_a_minted_token_in_the_url(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"uses": 1})
    result = await handshake(relay, query=f"?access_token={token}", headers={"Origin": ORIGIN})
    assert result.status == 101
    assert result.principal is not None
    assert result.principal["project"] == "acme"
    assert result.principal["method"] == "session_token"
    assert result.principal["expires_at"] > time.time() + 1700


async def test_token_as_second_subprotocol_starts_a_session(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"uses": 1})
    result = await handshake(relay, subprotocols=[RELAY_SUBPROTOCOL, token])
    assert result.status == 101
    assert result.subprotocol == RELAY_SUBPROTOCOL


async def test_token_starts_only_as_many_sessions_as_it_has_uses(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"uses": 2})
    assert (await handshake(relay, headers=bearer(token))).status == 101
    assert (await handshake(relay, headers=bearer(token))).status == 101
    spent = await handshake(relay, headers=bearer(token))
    assert spent.status == 403
    assert "all the sessions it allows" in spent.message


async def test_refused_origin_does_not_spend_a_use(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"uses": 1})
    refused = await handshake(relay, headers={**bearer(token), "Origin": "https://evil.test"})
    assert refused.status == 403
    assert (await handshake(relay, headers=bearer(token))).status == 101


async def test_uses_are_counted_across_replicas_sharing_redis(
    start_relay: StartRelay, world: World, redis_server: RedisServer
) -> None:
    settings = world.settings(redis_url=redis_server.url)
    replicas = [start_relay(settings=settings, store=open_quota_store(settings)) for _ in range(2)]
    token = await mint_token(replicas[0], bearer(ACME_KEY), {"uses": 3})
    results = await asyncio.gather(
        *(handshake(replicas[i % 2], headers=bearer(token)) for i in range(6))
    )
    assert sorted(r.status for r in results) == [101, 101, 101, 403, 403, 403]


async def test_token_is_refused_403_once_its_new_session_deadline_passes(
    relay: AuthServer,
) -> None:
    token = await mint_token(
        relay, bearer(ACME_KEY), {"uses": 3, "newSessionExpireTime": rfc3339(2.2)}
    )
    assert (await handshake(relay, headers=bearer(token))).status == 101
    await asyncio.sleep(2.3)
    late = await handshake(relay, headers=bearer(token))
    assert late.status == 403
    assert "newSessionExpireTime" in late.message


async def test_token_is_refused_403_once_it_expires(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"expireTime": rfc3339(2.2)})
    await asyncio.sleep(2.3)
    expired = await handshake(relay, headers=bearer(token))
    assert expired.status == 403
    assert "expired" in expired.message


async def test_new_session_deadline_never_outlives_the_token(relay: AuthServer) -> None:
    response = await mint(relay, bearer(ACME_KEY), {"expireTime": rfc3339(20)})
    body = response.json()
    assert body["newSessionExpireTime"] == body["expireTime"]


async def test_times_past_the_projects_ceiling_are_cut_to_it(relay: AuthServer) -> None:
    response = await mint(
        relay,
        bearer(ACME_KEY),
        {"expireTime": rfc3339(86400), "newSessionExpireTime": rfc3339(3600)},
    )
    body = response.json()
    assert parse_time(body["expireTime"]) <= time.time() + 1800
    assert parse_time(body["newSessionExpireTime"]) <= time.time() + 60


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"uses": 4}, "at most 3"),
        ({"uses": 0}, "uses"),
        ({"expireTime": rfc3339(-10)}, "in the future"),
        ({"expireTime": "2030-01-01T00:00:00"}, "timezone"),
        ({"lifetime": 5}, "lifetime"),
        ({"lockedSetup": {"sessionResumption": {}}}, "cannot be locked"),
        ({"lockedSetup": {"model": "gemini-9-ultra"}}, "not allowed"),
        ({"lockedSetup": {"generation_config": {"foo": 1}}}, 'Unknown name "foo"'),
        ({"lockedSetup": {"systemInstruction": {"parts": [{"text": "x" * 9000}]}}}, "lock fewer"),
        ([1, 2], "object"),
    ],
    ids=[
        "too-many-uses",
        "zero-uses",
        "past-expiry",
        "naive-time",
        "unknown-field",
        "unlockable-field",
        "model-not-allowed",
        "not-a-setup-field",
        "too-large-for-a-url",
        "not-an-object",
    ],
)
async def test_token_request_the_relay_cannot_grant_is_refused_400(
    relay: AuthServer, request_body: Any, expected: str
) -> None:
    response = await mint(relay, bearer(ACME_KEY), request_body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert expected in error["message"]


@pytest.mark.parametrize(
    "locked",
    [
        {"generationConfig": {"responseModalities": ["TEXT"]}},
        {"generation_config": {"response_modalities": ["TEXT"]}},
    ],
    ids=["camelCase", "snake_case"],
)
async def test_a_token_lock_that_contradicts_the_projects_lock_is_refused_403(
    relay: AuthServer, locked: dict[str, Any]
) -> None:
    response = await mint(relay, bearer(ACME_KEY), {"lockedSetup": locked})
    assert response.status_code == 403
    assert "generationConfig.responseModalities" in response.json()["error"]["message"]


async def test_empty_body_takes_every_default_and_broken_json_is_refused_400(
    relay: AuthServer,
) -> None:
    response = await mint(relay, bearer(ACME_KEY), None)
    assert response.status_code == 200, "no body: every default"
    async with httpx.AsyncClient(base_url=relay.http_url) as client:
        broken = await client.post("/v1/tokens", headers=bearer(ACME_KEY), content=b"{not json")
    assert broken.status_code == 400


async def test_locked_setup_fields_become_the_sessions_forced_setup(relay: AuthServer) -> None:
    locked = {
        "model": "gemini-live-2.5-flash",
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
        },
        "systemInstruction": {"parts": [{"text": "Answer in French."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
    }
    token = await mint_token(relay, bearer(ACME_KEY), {"lockedSetup": locked})
    result = await handshake(relay, headers=bearer(token))
    assert result.principal is not None
    assert result.principal["forced_setup"] == locked


async def test_snake_case_request_fields_are_accepted(relay: AuthServer) -> None:
    response = await mint(relay, bearer(ACME_KEY), {"uses": 1, "expire_time": rfc3339(120)})
    assert response.status_code == 200


async def test_user_credential_mints_tokens_for_its_own_user_only(relay: AuthServer) -> None:
    user_jwt = jwt.encode(claims(HS_ISSUER, AUDIENCE, sub="alice"), HS_SECRET, algorithm="HS256")
    token = await mint_token(relay, bearer(user_jwt))
    result = await handshake(relay, headers=bearer(token))
    assert result.principal is not None
    assert result.principal["user"] == "alice"
    other = await mint(relay, bearer(user_jwt), {"user": "mallory"})
    assert other.status_code == 403


async def test_api_key_holder_may_name_the_user_a_token_is_for(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"user": "bob"})
    result = await handshake(relay, headers=bearer(token))
    assert result.principal is not None
    assert result.principal["user"] == "bob"


async def test_session_token_cannot_mint_more_tokens(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY))
    response = await mint(relay, bearer(token))
    assert response.status_code == 403
    assert "cannot mint" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer("lr_unknown"), 401), (bearer(DORMANT_KEY), 403)],
    ids=["no-credential", "unknown-key", "disabled-project"],
)
async def test_token_request_is_authenticated_like_a_session(
    relay: AuthServer, headers: dict[str, str], status: int
) -> None:
    response = await mint(relay, headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == status


async def test_token_signed_with_another_key_is_refused_401(
    start_relay: StartRelay, world: World, relay: AuthServer
) -> None:
    other = start_relay(
        settings=world.settings(token_signing_key="another-signing-key-" + "o" * 32)
    )
    foreign = await mint_token(other, bearer(ACME_KEY))
    result = await handshake(relay, headers=bearer(foreign))
    assert result.status == 401


async def test_tampered_token_is_refused_401(relay: AuthServer) -> None:
    token = await mint_token(relay, bearer(ACME_KEY), {"uses": 1})
    header, _, signature = token.split(".")
    forged_claims = jwt.decode(token, options={"verify_signature": False}) | {"uses": 1000}
    forged_payload = jwt.utils.base64url_encode(json.dumps(forged_claims).encode())
    forged = f"{header}.{forged_payload.decode()}.{signature}"
    assert (await handshake(relay, headers=bearer(forged))).status == 401


async def test_token_of_a_removed_project_is_refused_401(
    start_relay: StartRelay, world: World
) -> None:
    relay = start_relay()
    token = await mint_token(relay, bearer(ACME_KEY))
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}) | {"prj": "gone"},
        TOKEN_SIGNING_KEY,
        algorithm="HS256",
    )
    result = await handshake(relay, headers=bearer(forged))
    assert result.status == 401
    assert "no longer exists" in result.message


async def test_default_project_from_relay_api_keys_allows_one_use_per_token(
    start_relay: StartRelay, world: World
) -> None:
    relay = start_relay(settings=world.settings(projects_file=None, api_keys=ACME_KEY))
    response = await mint(relay, bearer(ACME_KEY), {"uses": 2})
    assert response.status_code == 400
    token = await mint_token(relay, bearer(ACME_KEY))
    assert (await handshake(relay, headers=bearer(token))).status == 101
    assert (await handshake(relay, headers=bearer(token))).status == 403
