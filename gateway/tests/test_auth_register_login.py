"""POST /api/v1/auth/register and /login through the real gateway against PostgreSQL:
the rules, every bad input (a 4xx with a stable code, nothing changed), enumeration, lockout."""

from __future__ import annotations

import asyncio

import pytest

from services.auth.tests.helpers import bearer, link_token, new_email, wait_for_mails

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
GOOD_PASSWORD = "Passw0rd!x"


def body(email: str, **overrides):
    return {**{"email": email, "password": GOOD_PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}, **overrides}


def users_with_email(suite, email: str) -> int:
    return suite.sql("auth", "SELECT count(*) FROM users WHERE lower(email) = lower(%s)", (email.strip(),))[0][0]


# -- register -------------------------------------------------------------------------------------


async def test_register_creates_a_customer_signs_in_and_sends_a_verification_email(suite):
    raw = "  Grace.Hopper-" + new_email().upper() + "  "
    email = raw.strip().lower()
    response = await suite.http.post(REGISTER, json=body(raw), headers={"User-Agent": "pytest-agent"})
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    user, tokens = data["user"], data["tokens"]
    assert set(user) == {
        "id",
        "email",
        "firstName",
        "lastName",
        "phone",
        "role",
        "status",
        "emailVerified",
        "mfaEnabled",
        "createdAt",
    }
    assert user["email"] == email
    assert (user["role"], user["status"], user["emailVerified"], user["mfaEnabled"]) == (
        "CUSTOMER",
        "ACTIVE",
        False,
        False,
    )
    assert (user["firstName"], user["lastName"]) == ("Ada", "Lovelace")
    assert user["createdAt"].endswith("Z")
    assert set(tokens) == {"accessToken", "refreshToken", "tokenType", "expiresIn"}
    assert tokens["tokenType"] == "Bearer" and tokens["expiresIn"] == 900
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"refreshToken={tokens['refreshToken']};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/api/v1/auth" in cookie
    # bcrypt cost 12, never the password itself
    [(password_hash, role)] = suite.sql("auth", "SELECT password_hash, role FROM users WHERE email = %s", (email,))
    assert password_hash.startswith("$2b$12$") and GOOD_PASSWORD not in password_hash and role == "CUSTOMER"
    [(user_agent,)] = suite.sql("auth", "SELECT user_agent FROM sessions WHERE user_id = %s", (user["id"],))
    assert user_agent == "pytest-agent"
    me = await suite.http.get("/api/v1/auth/me", headers=bearer(tokens["accessToken"]))
    assert me.json()["data"] == user
    [mail] = await wait_for_mails(suite.mail_dir, email, "Verify your email")
    token = link_token(mail, "https://shop.example/verify-email")
    # only the token's hash is stored
    assert suite.sql("auth", "SELECT count(*) FROM one_time_tokens WHERE token_hash = %s", (token,))[0][0] == 0


async def test_email_taken_whatever_the_case_and_spaces(suite):
    email = new_email()
    assert (await suite.http.post(REGISTER, json=body(email))).status_code == 201
    response = await suite.http.post(REGISTER, json=body(f"  {email.upper()} ", password="0therPassw0rd"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "EMAIL_TAKEN"
    assert users_with_email(suite, email) == 1


async def test_concurrent_registrations_of_one_email_create_one_account(suite):
    email = new_email()
    responses = await asyncio.gather(*(suite.http.post(REGISTER, json=body(email)) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 5, [r.text for r in responses]
    assert all(r.json()["error"]["code"] == "EMAIL_TAKEN" for r in responses if r.status_code == 409)
    assert users_with_email(suite, email) == 1


MULTIBYTE_72 = "é" * 35 + "A1"  # 37 characters, exactly 72 bytes in UTF-8
MULTIBYTE_73 = "é" * 35 + "A1x"  # 73 bytes


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "   "}, "email"),
        ({"password": "Sh0rt"}, "password"),
        ({"password": "nouppercase1"}, "password"),
        ({"password": "NOLOWERCASE1"}, "password"),
        ({"password": "NoDigitsAtAll"}, "password"),
        ({"password": MULTIBYTE_73}, "password"),
        ({"password": "a" * 70 + "B1x"}, "password"),
        ({"firstName": ""}, "firstName"),
        ({"firstName": "   "}, "firstName"),
        ({"lastName": "x" * 51}, "lastName"),
        ({"password": 12345678}, "password"),
        ({"email": None}, "email"),
        ({"unexpected": "field"}, "unexpected"),
    ],
)
async def test_register_bad_inputs_are_400_and_create_nothing(suite, overrides, field):
    email = new_email()
    payload = {**body(email), **overrides}
    response = await suite.http.post(REGISTER, json=payload)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"]["fields"], error
    assert users_with_email(suite, email) == 0
    if isinstance(payload.get("email"), str) and "@" in payload["email"]:
        assert users_with_email(suite, payload["email"]) == 0


async def test_register_missing_field_and_invalid_json(suite):
    response = await suite.http.post(REGISTER, json={"email": new_email(), "password": GOOD_PASSWORD})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["fields"]) == {"firstName", "lastName"}
    response = await suite.http.post(REGISTER, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_72_byte_multibyte_password_works_and_is_never_truncated(suite):
    email = new_email()
    response = await suite.http.post(REGISTER, json=body(email, password=MULTIBYTE_72))
    assert response.status_code == 201, response.text
    ok = await suite.http.post(LOGIN, json={"email": email, "password": MULTIBYTE_72})
    assert ok.status_code == 200
    # a longer password sharing the first 72 bytes is not the same password
    wrong = await suite.http.post(LOGIN, json={"email": email, "password": MULTIBYTE_72 + "x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "INVALID_CREDENTIALS"


async def test_letters_and_digits_of_any_script_count_as_documented(suite):
    # The documented rule (and the schema's description): a lower-case letter, an upper-case letter
    # and a digit, of any script; the schema's pattern states only what a portable regex can (no NUL).
    accepted = await suite.http.post(REGISTER, json=body(new_email(), password="écoleÉCOLE٣٣"))
    assert accepted.status_code == 201, accepted.text
    for password, missing in (("ÉCOLE1234", "lower-case"), ("école1234", "upper-case"), ("écoleÉCOLE", "digit")):
        refused = await suite.http.post(REGISTER, json=body(new_email(), password=password))
        assert refused.status_code == 400, refused.text
        assert any(missing in m for m in refused.json()["error"]["details"]["fields"]["password"]), refused.text


# -- login ----------------------------------------------------------------------------------------


async def test_login_with_any_case_returns_user_tokens_and_cookie(suite):
    user = await suite.register()
    response = await suite.http.post(LOGIN, json={"email": "  " + user["email"].upper(), "password": user["password"]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["user"]["id"] == user["user"]["id"]
    assert data["tokens"]["refreshToken"] != user["tokens"]["refreshToken"]
    assert "refreshToken=" in response.headers["set-cookie"]
    assert response.headers["cache-control"] == "no-store"


async def test_unknown_email_and_wrong_password_are_byte_identical(suite):
    user = await suite.register()
    headers = {"X-Request-ID": "enumeration-probe-1"}
    unknown = await suite.http.post(LOGIN, json={"email": new_email(), "password": "Wr0ngPassword"}, headers=headers)
    wrong = await suite.http.post(LOGIN, json={"email": user["email"], "password": "Wr0ngPassword"}, headers=headers)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.content == wrong.content
    assert unknown.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"email": "a@b.com"},
        {"password": "x"},
        {"email": "", "password": ""},
        {"email": "a@b.com", "password": "x", "extra": 1},
    ],
)
async def test_login_bad_shapes_are_400(suite, payload):
    response = await suite.http.post(LOGIN, json=payload)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_five_failures_lock_the_email_until_the_window_passes(suite):
    user = await suite.register()
    for _ in range(5):
        response = await suite.http.post(LOGIN, json={"email": user["email"], "password": "Wr0ngPassword"})
        assert response.status_code == 401
    # even the right password is refused while locked
    locked = await suite.http.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert locked.status_code == 429, locked.text
    assert locked.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
    assert 0 < int(locked.headers["retry-after"]) <= 900
    sessions_before = suite.sql("auth", "SELECT count(*) FROM sessions WHERE user_id = %s", (user["user"]["id"],))
    # Stored in the database (shared by replicas): 5 attempts for this email.
    assert suite.sql("auth", "SELECT count(*) FROM login_attempts WHERE email = %s", (user["email"],))[0][0] == 5
    # Another email is not affected.
    other = await suite.register()
    assert (
        await suite.http.post(LOGIN, json={"email": other["email"], "password": other["password"]})
    ).status_code == 200
    # The window passes (moved back in the database rather than waiting 15 minutes).
    suite.sql(
        "auth",
        "UPDATE login_attempts SET attempted_at = attempted_at - interval '16 minutes' WHERE email = %s",
        (user["email"],),
    )
    assert (
        suite.sql("auth", "SELECT count(*) FROM sessions WHERE user_id = %s", (user["user"]["id"],)) == sessions_before
    )
    response = await suite.http.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert response.status_code == 200, response.text


async def test_lockout_applies_to_unknown_emails_too(suite):
    email = new_email()
    for _ in range(5):
        assert (await suite.http.post(LOGIN, json={"email": email, "password": "Wr0ngPassword"})).status_code == 401
    response = await suite.http.post(LOGIN, json={"email": email, "password": "Wr0ngPassword"})
    assert response.status_code == 429 and response.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"


async def test_concurrent_guesses_check_at_most_five_passwords(suite):
    user = await suite.register()
    responses = await asyncio.gather(
        *(suite.http.post(LOGIN, json={"email": user["email"], "password": f"Wr0ngPassword{i}"}) for i in range(12))
    )
    codes = sorted(r.json()["error"]["code"] for r in responses)
    assert codes.count("INVALID_CREDENTIALS") == 5, codes
    assert codes.count("TOO_MANY_ATTEMPTS") == 7


async def test_suspended_account_is_403_only_after_the_right_password(suite):
    admin = await suite.admin()
    user = await suite.register()
    patch = await suite.http.patch(
        f"/api/v1/users/{user['user']['id']}", json={"status": "SUSPENDED"}, headers=admin["headers"]
    )
    assert patch.status_code == 200, patch.text
    wrong = await suite.http.post(LOGIN, json={"email": user["email"], "password": "Wr0ngPassword"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "INVALID_CREDENTIALS"
    right = await suite.http.post(LOGIN, json={"email": user["email"], "password": user["password"]})
    assert right.status_code == 403 and right.json()["error"]["code"] == "ACCOUNT_SUSPENDED"
    assert (
        suite.sql(
            "auth", "SELECT count(*) FROM sessions WHERE user_id = %s AND revoked_at IS NULL", (user["user"]["id"],)
        )[0][0]
        == 0
    )


async def test_verification_link_verifies_the_email_once(suite):
    user = await suite.register()
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], "Verify your email")
    token = link_token(mail, "https://shop.example/verify-email")
    response = await suite.http.post("/api/v1/auth/email/verify", json={"token": token})
    assert response.status_code == 204, response.text
    me = await suite.http.get("/api/v1/auth/me", headers=user["headers"])
    assert me.json()["data"]["emailVerified"] is True
    again = await suite.http.post("/api/v1/auth/email/verify", json={"token": token})
    assert again.status_code == 400 and again.json()["error"]["code"] == "INVALID_TOKEN"


@pytest.mark.parametrize("token", ["", "not-a-real-token", "x" * 500])
async def test_bad_verification_tokens_are_400_and_verify_nothing(suite, token):
    user = await suite.register()
    response = await suite.http.post("/api/v1/auth/email/verify", json={"token": token})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_TOKEN"
    assert suite.sql("auth", "SELECT email_verified FROM users WHERE id = %s", (user["user"]["id"],))[0][0] is False


async def test_expired_verification_token_is_refused(suite):
    user = await suite.register()
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], "Verify your email")
    token = link_token(mail, "https://shop.example/verify-email")
    suite.sql(
        "auth",
        "UPDATE one_time_tokens SET expires_at = now() - interval '1 minute' WHERE user_id = %s",
        (user["user"]["id"],),
    )
    response = await suite.http.post("/api/v1/auth/email/verify", json={"token": token})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_TOKEN"
    assert suite.sql("auth", "SELECT email_verified FROM users WHERE id = %s", (user["user"]["id"],))[0][0] is False
