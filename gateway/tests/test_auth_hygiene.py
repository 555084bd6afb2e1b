"""Password and session hygiene: a stale bcrypt cost is re-hashed at login, password and MFA
changes are mailed to the account, MFA enable/disable are throttled like logins, and a session
ends after its absolute lifetime whatever its refreshes."""

from __future__ import annotations

import bcrypt
import httpx
import pytest_asyncio

from services.auth.tests.helpers import link_token, totp_code, wait_for_mails

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
SETUP = "/api/v1/auth/mfa/setup"
ENABLE = "/api/v1/auth/mfa/enable"
DISABLE = "/api/v1/auth/mfa/disable"
PASSWORD_CHANGED = "Your password was changed"


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(suite):
    async with httpx.AsyncClient(base_url=suite.base_url, timeout=60) as client:
        yield client


def stored_hash(suite, user_id: str) -> str:
    return suite.sql("auth", "SELECT password_hash FROM users WHERE id = %s", (user_id,))[0][0]


async def test_a_hash_of_another_cost_is_rehashed_at_the_next_login(suite, fresh):
    user = await suite.register()
    user_id, rounds = user["user"]["id"], suite.servers["auth"].settings.bcrypt_rounds
    cheap = bcrypt.hashpw(user["password"].encode(), bcrypt.gensalt(4)).decode()
    suite.sql("auth", "UPDATE users SET password_hash = %s WHERE id = %s", (cheap, user_id))

    wrong = await fresh.post(LOGIN, json={"email": user["email"], "password": "Wrong-passw0rd"})
    assert wrong.status_code == 401
    assert stored_hash(suite, user_id) == cheap  # only a successful login re-hashes

    response = await fresh.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert response.status_code == 200, response.text
    rehashed = stored_hash(suite, user_id)
    assert rehashed != cheap and rehashed.startswith(f"$2b${rounds:02d}$")
    again = await fresh.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert again.status_code == 200 and stored_hash(suite, user_id) == rehashed


async def test_a_password_change_and_a_reset_are_mailed_to_the_account(suite, fresh):
    user = await suite.register()
    response = await fresh.post(
        "/api/v1/auth/password/change",
        headers=user["headers"],
        json={"currentPassword": user["password"], "newPassword": "N3w-passw0rd!"},
    )
    assert response.status_code in (200, 204), response.text
    [notice] = await wait_for_mails(suite.mail_dir, user["email"], PASSWORD_CHANGED)
    assert "/account" in notice.get_content()

    assert (await fresh.post("/api/v1/auth/password/forgot", json={"email": user["email"]})).status_code == 202
    [reset] = await wait_for_mails(suite.mail_dir, user["email"], "Reset your password")
    token = link_token(reset, "https://shop.example/reset-password")
    done = await fresh.post("/api/v1/auth/password/reset", json={"token": token, "newPassword": "Th1rd-passw0rd!"})
    assert done.status_code in (200, 204), done.text
    assert len(await wait_for_mails(suite.mail_dir, user["email"], PASSWORD_CHANGED, count=2)) == 2


async def test_mfa_changes_are_mailed_to_the_account(suite, fresh):
    user = await suite.register()
    secret = (await fresh.post(SETUP, headers=user["headers"])).json()["data"]["secret"]
    enabled = await fresh.post(ENABLE, json={"otp": totp_code(secret)}, headers=user["headers"])
    assert enabled.status_code == 200, enabled.text
    assert await wait_for_mails(suite.mail_dir, user["email"], "Two-factor authentication was turned on")
    recovery_code = enabled.json()["data"]["recoveryCodes"][0]
    disabled = await fresh.post(DISABLE, json={"recoveryCode": recovery_code}, headers=user["headers"])
    assert disabled.status_code in (200, 204), disabled.text
    assert await wait_for_mails(suite.mail_dir, user["email"], "Two-factor authentication was turned off")


async def test_mfa_enable_is_throttled_like_login_and_apart_from_it(suite, fresh):
    user = await suite.register()
    limit = suite.servers["auth"].settings.login_max_failures
    secret = (await fresh.post(SETUP, headers=user["headers"])).json()["data"]["secret"]
    wrong = str((int(totp_code(secret)) + 1) % 1_000_000).zfill(6)
    for _ in range(limit):
        response = await fresh.post(ENABLE, json={"otp": wrong}, headers=user["headers"])
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_OTP"
    locked = await fresh.post(ENABLE, json={"otp": totp_code(secret)}, headers=user["headers"])
    assert locked.status_code == 429, locked.text
    assert locked.json()["error"]["code"] == "TOO_MANY_ATTEMPTS" and "retry-after" in locked.headers
    assert suite.sql("auth", "SELECT mfa_enabled FROM users WHERE id = %s", (user["user"]["id"],))[0][0] is False
    # The MFA counter is not the login counter: the owner can still sign in.
    login = await fresh.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 200, login.text


async def test_mfa_disable_is_throttled_like_login_and_apart_from_it(suite, fresh):
    user = await suite.register()
    limit = suite.servers["auth"].settings.login_max_failures
    secret = (await fresh.post(SETUP, headers=user["headers"])).json()["data"]["secret"]
    enabled = await fresh.post(ENABLE, json={"otp": totp_code(secret)}, headers=user["headers"])
    assert enabled.status_code == 200, enabled.text
    recovery_code = enabled.json()["data"]["recoveryCodes"][0]
    for _ in range(limit):
        response = await fresh.post(DISABLE, json={"recoveryCode": "AAAA-BBBB-CCCC"}, headers=user["headers"])
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_RECOVERY_CODE"
    # Even a good recovery code waits: guessing codes is as slow as guessing passwords.
    locked = await fresh.post(DISABLE, json={"recoveryCode": recovery_code}, headers=user["headers"])
    assert locked.status_code == 429, locked.text
    assert locked.json()["error"]["code"] == "TOO_MANY_ATTEMPTS" and "retry-after" in locked.headers
    assert suite.sql("auth", "SELECT mfa_enabled FROM users WHERE id = %s", (user["user"]["id"],))[0][0] is True
    unused = "SELECT count(*) FROM recovery_codes WHERE user_id = %s AND used_at IS NULL"
    assert suite.sql("auth", unused, (user["user"]["id"],))[0][0] == 10
    # The MFA counter is not the login counter: the owner is asked for a code, not locked out.
    login = await fresh.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 401 and login.json()["error"]["code"] == "MFA_REQUIRED", login.text


async def test_a_session_ends_after_its_absolute_lifetime_whatever_its_refreshes(suite, fresh):
    max_days = suite.servers["auth"].settings.session_max_lifetime_days
    user = await suite.register()
    token = user["tokens"]["refreshToken"]
    session_id = suite.sql("auth", "SELECT id FROM sessions WHERE user_id = %s", (user["user"]["id"],))[0][0]

    # Started just inside the lifetime: it refreshes, but its new end is the absolute one.
    suite.sql(
        "auth",
        "UPDATE sessions SET created_at = now() - make_interval(days => %s) + interval '1 hour' WHERE id = %s",
        (max_days, session_id),
    )
    refreshed = await fresh.post(REFRESH, json={"refreshToken": token})
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["data"]["tokens"]["refreshToken"]
    [(ends_in,)] = suite.sql(
        "auth", "SELECT extract(epoch FROM expires_at - now()) FROM sessions WHERE id = %s", (session_id,)
    )
    assert 0 < ends_in <= 3600

    # Past it: refused, however recently the token was issued.
    suite.sql(
        "auth",
        "UPDATE sessions SET created_at = now() - make_interval(days => %s + 1), "
        "expires_at = now() + interval '29 days' WHERE id = %s",
        (max_days, session_id),
    )
    suite.sql(
        "auth", "UPDATE refresh_tokens SET expires_at = now() + interval '29 days' WHERE session_id = %s", (session_id,)
    )
    expired = await fresh.post(REFRESH, json={"refreshToken": token})
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "INVALID_REFRESH_TOKEN"
