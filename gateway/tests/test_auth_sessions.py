"""Refresh-token rotation and reuse detection, logout, sessions, JWKS — through the real gateway."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import jwt
import pytest
import pytest_asyncio

from gateway.app import create_app
from services.auth.tests.helpers import bearer, wait_until

REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(suite):
    """A client with its own (empty) cookie jar."""
    async with httpx.AsyncClient(base_url=suite.base_url, timeout=60) as client:
        yield client


async def login(client, user) -> dict:
    response = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert response.status_code == 200, response.text
    return response.json()["data"]["tokens"]


def session_of(suite, refresh_token: str) -> tuple:
    """(id, revoked_at, used) of the session the refresh token belongs to."""
    import hashlib

    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    rows = suite.sql(
        "auth",
        "SELECT s.id, s.revoked_at, t.used FROM refresh_tokens t JOIN sessions s "
        "ON s.id = t.session_id WHERE t.token_hash = %s",
        (digest,),
    )
    assert rows, "no session holds this refresh token"
    return rows[0]


async def test_refresh_rotates_and_the_old_token_stops_working(suite, fresh):
    user = await suite.register()
    first = user["tokens"]
    response = await fresh.post(REFRESH, json={"refreshToken": first["refreshToken"]})
    assert response.status_code == 200, response.text
    second = response.json()["data"]["tokens"]
    assert set(second) == {"accessToken", "refreshToken", "tokenType", "expiresIn"}
    assert second["refreshToken"] != first["refreshToken"] and second["accessToken"] != first["accessToken"]
    assert f"refreshToken={second['refreshToken']};" in response.headers["set-cookie"]
    claims = jwt.decode(second["accessToken"], options={"verify_signature": False})
    assert claims["sid"] == session_of(suite, first["refreshToken"])[0]
    assert (await fresh.get(ME, headers=bearer(second["accessToken"]))).status_code == 200
    # only hashes are stored
    assert (
        suite.sql("auth", "SELECT count(*) FROM refresh_tokens WHERE token_hash = %s", (second["refreshToken"],))[0][0]
        == 0
    )


async def test_reused_refresh_token_revokes_the_whole_session(suite, fresh):
    user = await suite.register()
    old = user["tokens"]["refreshToken"]
    newer = (await fresh.post(REFRESH, json={"refreshToken": old})).json()["data"]["tokens"]
    reuse = await fresh.post(REFRESH, json={"refreshToken": old})
    assert reuse.status_code == 401 and reuse.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    session_id, revoked_at, _ = session_of(suite, old)
    assert revoked_at is not None
    # the newest refresh token of that session fails too, and so do its access tokens
    newest = await fresh.post(REFRESH, json={"refreshToken": newer["refreshToken"]})
    assert newest.status_code == 401
    assert newest.json()["error"]["code"] in ("INVALID_REFRESH_TOKEN", "REFRESH_TOKEN_REUSED")
    assert (await fresh.get(ME, headers=bearer(newer["accessToken"]))).status_code == 401
    # another session of the same user is untouched
    other = await login(fresh, user)
    assert (await fresh.get(ME, headers=bearer(other["accessToken"]))).status_code == 200


async def test_eight_concurrent_refreshes_exactly_one_succeeds(suite, fresh):
    user = await suite.register()
    token = user["tokens"]["refreshToken"]
    session_id = session_of(suite, token)[0]
    responses = await asyncio.gather(*(fresh.post(REFRESH, json={"refreshToken": token}) for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 7, [r.text for r in responses]
    # exactly one successor token was minted for the session
    assert suite.sql("auth", "SELECT count(*) FROM refresh_tokens WHERE session_id = %s", (session_id,))[0][0] == 2


async def test_a_refresh_racing_a_running_rotation_fails_without_ending_the_session(suite, fresh):
    """A refresh that started while another one with the same token was still rotating it is a
    concurrent duplicate (several tabs), not a replay: it gets 401 but the session lives on. Once the
    rotation has finished, presenting the token again is reuse and ends the session."""
    import hashlib

    import psycopg

    user = await suite.register()
    token = user["tokens"]["refreshToken"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    session_id = session_of(suite, token)[0]
    winner = psycopg.connect(suite.database_urls["auth"].replace("+psycopg", ""))
    try:
        # The "winning" rotation claims the token and keeps its transaction open.
        winner.execute(
            "UPDATE refresh_tokens SET used = true, used_at = clock_timestamp() WHERE token_hash = %s AND used = false",
            (digest,),
        )
        racing = asyncio.create_task(fresh.post(REFRESH, json={"refreshToken": token}))

        async def racing_is_blocked():
            return (
                suite.sql(
                    "auth",
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'",
                )[0][0]
                > 0
            )

        assert await wait_until(racing_is_blocked, timeout=10)
        winner.execute("UPDATE refresh_tokens SET used_at = clock_timestamp() WHERE token_hash = %s", (digest,))
        winner.commit()
    finally:
        winner.close()
    response = await racing
    assert response.status_code == 401 and response.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    assert suite.sql("auth", "SELECT revoked_at FROM sessions WHERE id = %s", (session_id,)) == [(None,)]
    replay = await fresh.post(REFRESH, json={"refreshToken": token})
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    assert suite.sql("auth", "SELECT revoked_at FROM sessions WHERE id = %s", (session_id,))[0][0] is not None


@pytest.mark.parametrize("token", ["", "   ", "garbage", "x" * 300])
async def test_bad_refresh_tokens(suite, fresh, token):
    before = suite.sql("auth", "SELECT count(*) FROM refresh_tokens")[0][0]
    response = await fresh.post(REFRESH, json={"refreshToken": token})
    if token.strip():
        assert response.status_code == 401 and response.json()["error"]["code"] == "INVALID_REFRESH_TOKEN"
    else:
        assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert suite.sql("auth", "SELECT count(*) FROM refresh_tokens")[0][0] == before


async def test_refresh_without_body_or_cookie_is_400(fresh):
    response = await fresh.post(REFRESH)
    assert response.status_code == 400
    assert "refreshToken" in response.json()["error"]["details"]["fields"]
    response = await fresh.post(REFRESH, json={"refreshToken": 123})
    assert response.status_code == 400


async def test_expired_refresh_token_is_refused(suite, fresh):
    user = await suite.register()
    token = user["tokens"]["refreshToken"]
    session_id = session_of(suite, token)[0]
    suite.sql(
        "auth",
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE session_id = %s",
        (session_id,),
    )
    response = await fresh.post(REFRESH, json={"refreshToken": token})
    assert response.status_code == 401 and response.json()["error"]["code"] == "INVALID_REFRESH_TOKEN"


async def test_refresh_and_logout_accept_the_cookie(suite, fresh):
    user = await suite.register()
    await login(fresh, user)  # sets the cookie in this client's jar
    response = await fresh.post(REFRESH)
    assert response.status_code == 200, response.text
    tokens = response.json()["data"]["tokens"]
    # logout with only the cookie (e.g. the access token already expired)
    out = await fresh.post(LOGOUT)
    assert out.status_code == 204
    assert 'refreshToken=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert session_of(suite, tokens["refreshToken"])[1] is not None
    again = await fresh.post(REFRESH, json={"refreshToken": tokens["refreshToken"]})
    assert again.status_code == 401


async def test_cookie_is_secure_over_https(suite):
    user = await suite.register()
    app = create_app(suite.gateway_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gw") as client:
            response = await client.post(
                "/api/v1/auth/login", json={"email": user["email"], "password": user["password"]}
            )
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/api/v1/auth" in cookie


async def test_logout_ends_the_session_at_once(suite, fresh):
    user = await suite.register()
    tokens = await login(fresh, user)
    headers = bearer(tokens["accessToken"])
    assert (await fresh.get("/api/v1/wishlist", headers=headers)).status_code == 200
    response = await fresh.post(LOGOUT, headers=headers)
    assert response.status_code == 204, response.text
    # at once at this gateway, for every route (not only auth's)
    for path in (ME, "/api/v1/wishlist", "/api/v1/auth/sessions"):
        refused = await fresh.get(path, headers=headers)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json()["error"]["code"] == "UNAUTHENTICATED"
    assert (await fresh.post(REFRESH, json={"refreshToken": tokens["refreshToken"]})).status_code == 401
    assert session_of(suite, tokens["refreshToken"])[1] is not None
    # the registration session is still alive
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 200


async def test_logout_with_an_expired_access_token_uses_the_refresh_token(suite, fresh):
    from services.auth.keys import SigningKey

    user = await suite.register()
    claims = jwt.decode(user["tokens"]["accessToken"], options={"verify_signature": False})
    expired = (
        SigningKey(suite.private_key_pem)
        .mint_access_token(
            issuer=claims["iss"],
            audience=claims["aud"],
            user_id=claims["sub"],
            role=claims["role"],
            session_id=claims["sid"],
            lifetime=timedelta(minutes=15),
            now=0,
        )
        .token
    )
    only_expired = await fresh.post(LOGOUT, headers=bearer(expired))
    assert only_expired.status_code == 401
    response = await fresh.post(LOGOUT, headers=bearer(expired), json={"refreshToken": user["tokens"]["refreshToken"]})
    assert response.status_code == 204, response.text
    assert suite.sql("auth", "SELECT revoked_at FROM sessions WHERE id = %s", (claims["sid"],))[0][0] is not None
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 401


async def test_logout_without_any_token_is_401(fresh):
    response = await fresh.post(LOGOUT)
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
    response = await fresh.post(LOGOUT, json={"refreshToken": "unknown"})
    assert response.status_code == 401


async def test_sessions_list_and_revoke(suite, fresh):
    user = await suite.register()
    second = await login(fresh, user)
    third = await login(fresh, user)
    response = await fresh.get("/api/v1/auth/sessions", headers=bearer(third["accessToken"]))
    assert response.status_code == 200, response.text
    body = response.json()
    sessions = body["data"]
    assert len(sessions) == 3 and body["page"]["totalSize"] == 3
    for item in sessions:
        assert set(item) == {"id", "createdAt", "lastUsedAt", "userAgent", "ip", "current"}
        assert item["ip"] == "127.0.0.1"
    for secret in (second["accessToken"], second["refreshToken"], third["refreshToken"], third["accessToken"]):
        assert secret not in response.text
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    assert current[0]["id"] == jwt.decode(third["accessToken"], options={"verify_signature": False})["sid"]
    second_sid = jwt.decode(second["accessToken"], options={"verify_signature": False})["sid"]
    revoke = await fresh.delete(f"/api/v1/auth/sessions/{second_sid}", headers=bearer(third["accessToken"]))
    assert revoke.status_code == 204
    assert (await fresh.get(ME, headers=bearer(second["accessToken"]))).status_code == 401
    assert (await fresh.post(REFRESH, json={"refreshToken": second["refreshToken"]})).status_code == 401
    listed = (await fresh.get("/api/v1/auth/sessions", headers=bearer(third["accessToken"]))).json()["data"]
    assert second_sid not in {s["id"] for s in listed} and len(listed) == 2
    # revoking it again, or an unknown id → 404
    again = await fresh.delete(f"/api/v1/auth/sessions/{second_sid}", headers=bearer(third["accessToken"]))
    assert again.status_code == 404 and again.json()["error"]["code"] == "SESSION_NOT_FOUND"
    # revoke all → count, and every token of the user stops working
    everything = await fresh.delete("/api/v1/auth/sessions", headers=bearer(third["accessToken"]))
    assert everything.status_code == 200 and everything.json()["data"] == {"revokedCount": 2}
    assert (await fresh.get(ME, headers=bearer(third["accessToken"]))).status_code == 401
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 401


async def test_cannot_revoke_another_users_session(suite, fresh):
    victim = await suite.register()
    attacker = await suite.register()
    victim_sid = jwt.decode(victim["tokens"]["accessToken"], options={"verify_signature": False})["sid"]
    response = await fresh.delete(f"/api/v1/auth/sessions/{victim_sid}", headers=attacker["headers"])
    assert response.status_code == 404 and response.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert suite.sql("auth", "SELECT revoked_at FROM sessions WHERE id = %s", (victim_sid,))[0][0] is None
    assert (await fresh.get(ME, headers=victim["headers"])).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ME),
        ("GET", "/api/v1/auth/sessions"),
        ("DELETE", "/api/v1/auth/sessions"),
        ("DELETE", "/api/v1/auth/sessions/x"),
        ("POST", "/api/v1/auth/mfa/setup"),
    ],
)
async def test_user_routes_need_a_token(fresh, method, path):
    response = await fresh.request(method, path)
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_jwks_verifies_access_tokens(suite, fresh):
    user = await suite.register()
    response = await fresh.get("/.well-known/jwks.json")
    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
    }
    assert "d" not in key  # never the private part
    token = user["tokens"]["accessToken"]
    assert jwt.get_unverified_header(token)["kid"] == key["kid"]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience="shop", issuer="shop-auth")
    assert claims["sub"] == user["user"]["id"] and claims["typ"] == "access" and claims["role"] == "CUSTOMER"
    assert claims["exp"] - claims["iat"] == 900
