"""TOTP two-factor authentication: setup, enable (recovery codes), login, replay, disable."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pyotp

from services.auth.tests.helpers import totp_code

SETUP = "/api/v1/auth/mfa/setup"
ENABLE = "/api/v1/auth/mfa/enable"
DISABLE = "/api/v1/auth/mfa/disable"
LOGIN = "/api/v1/auth/login"


def mfa_row(suite, user_id: str) -> tuple:
    return suite.sql("auth", "SELECT mfa_enabled, mfa_secret, mfa_last_step FROM users WHERE id = %s", (user_id,))[0]


async def enable_mfa(suite, user) -> tuple[str, list[str]]:
    setup = await suite.http.post(SETUP, headers=user["headers"])
    assert setup.status_code == 200, setup.text
    secret = setup.json()["data"]["secret"]
    response = await suite.http.post(ENABLE, json={"otp": totp_code(secret)}, headers=user["headers"])
    assert response.status_code == 200, response.text
    return secret, response.json()["data"]["recoveryCodes"]


async def test_setup_returns_a_secret_and_otpauth_uri(suite):
    user = await suite.register()
    response = await suite.http.post(SETUP, headers=user["headers"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"secret", "otpauthUri"}
    assert re.fullmatch(r"[A-Z2-7]{32}", data["secret"])
    parsed = pyotp.parse_uri(data["otpauthUri"])
    assert isinstance(parsed, pyotp.TOTP)  # time-based codes
    assert parsed.secret == data["secret"] and parsed.digits == 6 and parsed.interval == 30
    assert parsed.name == user["email"]
    # not enabled until a code proves the app has it
    assert mfa_row(suite, user["user"]["id"])[0] is False
    me = await suite.http.get("/api/v1/auth/me", headers=user["headers"])
    assert me.json()["data"]["mfaEnabled"] is False


async def test_enable_with_a_wrong_code_changes_nothing(suite):
    user = await suite.register()
    secret = (await suite.http.post(SETUP, headers=user["headers"])).json()["data"]["secret"]
    wrong = str((int(totp_code(secret)) + 1) % 1_000_000).zfill(6)
    for otp in (wrong, "abcdef", "12345"):
        response = await suite.http.post(ENABLE, json={"otp": otp}, headers=user["headers"])
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_OTP"
    assert (await suite.http.post(ENABLE, json={}, headers=user["headers"])).status_code == 400
    assert mfa_row(suite, user["user"]["id"])[0] is False
    assert suite.sql("auth", "SELECT count(*) FROM recovery_codes WHERE user_id = %s", (user["user"]["id"],))[0][0] == 0


async def test_enable_before_setup_is_409(suite):
    user = await suite.register()
    response = await suite.http.post(ENABLE, json={"otp": "123456"}, headers=user["headers"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "MFA_NOT_SET_UP"


async def test_enable_gives_ten_hashed_single_use_recovery_codes(suite):
    user = await suite.register()
    secret, codes = await enable_mfa(suite, user)
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = {
        row[0]
        for row in suite.sql("auth", "SELECT code_hash FROM recovery_codes WHERE user_id = %s", (user["user"]["id"],))
    }
    assert len(stored) == 10 and not stored & set(codes)
    assert hashlib.sha256(codes[0].replace("-", "").encode()).hexdigest() in stored
    enabled, stored_secret, _ = mfa_row(suite, user["user"]["id"])
    assert enabled is True and stored_secret == secret
    again = await suite.http.post(SETUP, headers=user["headers"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "MFA_ALREADY_ENABLED"


async def test_login_requires_a_fresh_code(suite):
    user = await suite.register()
    secret, _ = await enable_mfa(suite, user)
    credentials = {"email": user["email"], "password": user["password"]}
    missing = await suite.http.post(LOGIN, json=credentials)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "MFA_REQUIRED"
    wrong = await suite.http.post(
        LOGIN, json={**credentials, "otp": "000000" if totp_code(secret) != "000000" else "111111"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "INVALID_OTP"
    # the code used to enable MFA cannot be replayed to log in
    used_step = mfa_row(suite, user["user"]["id"])[2]
    replay = pyotp.TOTP(secret).at(used_step * 30)
    response = await suite.http.post(LOGIN, json={**credentials, "otp": replay})
    assert response.status_code == 401 and response.json()["error"]["code"] == "INVALID_OTP"
    # the next time-step's code (within the drift window) works once
    fresh = pyotp.TOTP(secret).at((used_step + 1) * 30)
    ok = await suite.http.post(LOGIN, json={**credentials, "otp": fresh})
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["user"]["mfaEnabled"] is True
    replay = await suite.http.post(LOGIN, json={**credentials, "otp": fresh})
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "INVALID_OTP"
    # a wrong password with MFA on is still just invalid credentials
    bad = await suite.http.post(LOGIN, json={"email": user["email"], "password": "Wr0ngPassword", "otp": fresh})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "INVALID_CREDENTIALS"


async def test_one_code_in_concurrent_logins_is_accepted_once(suite):
    user = await suite.register()
    secret, _ = await enable_mfa(suite, user)
    used_step = mfa_row(suite, user["user"]["id"])[2]
    code = pyotp.TOTP(secret).at((used_step + 1) * 30)
    credentials = {"email": user["email"], "password": user["password"], "otp": code}
    responses = await asyncio.gather(*(suite.http.post(LOGIN, json=credentials) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401], [r.text for r in responses]


async def test_recovery_code_logs_in_once(suite):
    user = await suite.register()
    _, codes = await enable_mfa(suite, user)
    credentials = {"email": user["email"], "password": user["password"]}
    ok = await suite.http.post(LOGIN, json={**credentials, "otp": codes[0]})
    assert ok.status_code == 200, ok.text
    again = await suite.http.post(LOGIN, json={**credentials, "otp": codes[0]})
    assert again.status_code == 401 and again.json()["error"]["code"] == "INVALID_OTP"
    assert (
        suite.sql(
            "auth",
            "SELECT count(*) FROM recovery_codes WHERE user_id = %s AND used_at IS NOT NULL",
            (user["user"]["id"],),
        )[0][0]
        == 1
    )


async def test_disable_with_a_recovery_code(suite):
    user = await suite.register()
    _, codes = await enable_mfa(suite, user)
    wrong = await suite.http.post(DISABLE, json={"recoveryCode": "aaaa-bbbb-cccc-dddd"}, headers=user["headers"])
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "INVALID_RECOVERY_CODE"
    assert mfa_row(suite, user["user"]["id"])[0] is True
    response = await suite.http.post(DISABLE, json={"recoveryCode": codes[3]}, headers=user["headers"])
    assert response.status_code == 204, response.text
    assert mfa_row(suite, user["user"]["id"])[:2] == (False, None)
    assert suite.sql("auth", "SELECT count(*) FROM recovery_codes WHERE user_id = %s", (user["user"]["id"],))[0][0] == 0
    login = await suite.http.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 200
    not_enabled = await suite.http.post(DISABLE, json={"otp": "123456"}, headers=user["headers"])
    assert not_enabled.status_code == 409 and not_enabled.json()["error"]["code"] == "MFA_NOT_ENABLED"


async def test_disable_with_an_otp_and_bad_inputs(suite):
    user = await suite.register()
    secret, _ = await enable_mfa(suite, user)
    used_step = mfa_row(suite, user["user"]["id"])[2]
    # the enabling code cannot be replayed to disable
    replay = await suite.http.post(
        DISABLE, json={"otp": pyotp.TOTP(secret).at(used_step * 30)}, headers=user["headers"]
    )
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "INVALID_OTP"
    empty = await suite.http.post(DISABLE, json={}, headers=user["headers"])
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "VALIDATION_ERROR"
    assert mfa_row(suite, user["user"]["id"])[0] is True
    response = await suite.http.post(
        DISABLE, json={"otp": pyotp.TOTP(secret).at((used_step + 1) * 30)}, headers=user["headers"]
    )
    assert response.status_code == 204, response.text
    assert mfa_row(suite, user["user"]["id"])[0] is False
