"""Password change, forgot/reset (emails read from the .eml files), and the SMTP mail backend."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
import pytest_asyncio

from services.auth.server import build_server
from services.auth.tests.helpers import bearer, link_token, new_email, wait_for_mails
from shop.auth.v1 import auth_pb2
from shop.lib.clients import ServiceClients
from shop.lib.settings import BaseShopSettings
from tests.harness import free_port, identity_settings

CHANGE = "/api/v1/auth/password/change"
FORGOT = "/api/v1/auth/password/forgot"
RESET = "/api/v1/auth/password/reset"
ME = "/api/v1/auth/me"
RESET_SUBJECT = "Reset your password"
RESET_LINK = "https://shop.example/reset-password"


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(suite):
    async with httpx.AsyncClient(base_url=suite.base_url, timeout=60) as client:
        yield client


def password_hash(suite, user_id: str) -> str:
    return suite.sql("auth", "SELECT password_hash FROM users WHERE id = %s", (user_id,))[0][0]


async def login_status(client, email: str, password: str) -> int:
    return (await client.post("/api/v1/auth/login", json={"email": email, "password": password})).status_code


# -- change -----------------------------------------------------------------------------------------


async def test_change_password_keeps_this_session_and_ends_the_others(suite, fresh):
    user = await suite.register()
    other = (
        await fresh.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    ).json()["data"]["tokens"]
    response = await fresh.post(
        CHANGE, json={"currentPassword": user["password"], "newPassword": "N3wPassword"}, headers=user["headers"]
    )
    assert response.status_code == 204, response.text
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 200
    assert (await fresh.get(ME, headers=bearer(other["accessToken"]))).status_code == 401
    assert (await fresh.post("/api/v1/auth/refresh", json={"refreshToken": other["refreshToken"]})).status_code == 401
    assert await login_status(fresh, user["email"], user["password"]) == 401
    assert await login_status(fresh, user["email"], "N3wPassword") == 200


async def test_wrong_current_password_is_400_and_changes_nothing(suite, fresh):
    user = await suite.register()
    before = password_hash(suite, user["user"]["id"])
    response = await fresh.post(
        CHANGE, json={"currentPassword": "Wr0ngPassword", "newPassword": "N3wPassword"}, headers=user["headers"]
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_PASSWORD"
    assert password_hash(suite, user["user"]["id"]) == before
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"currentPassword": "Passw0rd!x", "newPassword": "weak"}, "newPassword"),
        ({"currentPassword": "Passw0rd!x", "newPassword": "é" * 35 + "A1x"}, "newPassword"),
        ({"currentPassword": "Passw0rd!x"}, "newPassword"),
        ({"newPassword": "N3wPassword"}, "currentPassword"),
        ({"currentPassword": "", "newPassword": "N3wPassword"}, "currentPassword"),
    ],
)
async def test_change_password_bad_inputs(suite, fresh, payload, field):
    user = await suite.register()
    before = password_hash(suite, user["user"]["id"])
    response = await fresh.post(CHANGE, json=payload, headers=user["headers"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["details"]["fields"]
    assert password_hash(suite, user["user"]["id"]) == before


async def test_change_password_needs_a_token(fresh):
    response = await fresh.post(CHANGE, json={"currentPassword": "Passw0rd!x", "newPassword": "N3wPassword"})
    assert response.status_code == 401


# -- forgot and reset ---------------------------------------------------------------------------------


async def test_forgot_is_always_202_and_mails_only_known_accounts(suite, fresh):
    unknown = new_email()
    for email in (unknown, "not an email", ""):
        response = await fresh.post(FORGOT, json={"email": email})
        assert response.status_code == 202
    user = await suite.register()
    response = await fresh.post(FORGOT, json={"email": "  " + user["email"].upper()})
    assert response.status_code == 202
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT)
    token = link_token(mail, RESET_LINK)
    # only the hash of the token is stored
    assert suite.sql("auth", "SELECT count(*) FROM one_time_tokens WHERE token_hash = %s", (token,))[0][0] == 0
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert suite.sql("auth", "SELECT purpose FROM one_time_tokens WHERE token_hash = %s", (digest,)) == [
        ("password_reset",)
    ]
    assert await wait_for_mails(suite.mail_dir, unknown, RESET_SUBJECT, timeout=0.5) == []
    response = await fresh.post(FORGOT, json={})
    assert response.status_code == 400


async def test_reset_sets_the_password_once_and_ends_every_session(suite, fresh):
    user = await suite.register()
    await fresh.post(FORGOT, json={"email": user["email"]})
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT)
    token = link_token(mail, RESET_LINK)
    response = await fresh.post(RESET, json={"token": token, "newPassword": "R3setPassword"})
    assert response.status_code == 204, response.text
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 401
    assert await login_status(fresh, user["email"], user["password"]) == 401
    assert await login_status(fresh, user["email"], "R3setPassword") == 200
    again = await fresh.post(RESET, json={"token": token, "newPassword": "An0therPassword"})
    assert again.status_code == 400 and again.json()["error"]["code"] == "INVALID_TOKEN"
    assert await login_status(fresh, user["email"], "R3setPassword") == 200


async def test_a_newer_reset_request_voids_older_tokens(suite, fresh):
    user = await suite.register()
    await fresh.post(FORGOT, json={"email": user["email"]})
    [first] = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT)
    await fresh.post(FORGOT, json={"email": user["email"]})
    mails = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT, count=2)
    tokens = {link_token(m, RESET_LINK) for m in mails}
    old = link_token(first, RESET_LINK)
    [new] = tokens - {old}
    before = password_hash(suite, user["user"]["id"])
    response = await fresh.post(RESET, json={"token": old, "newPassword": "R3setPassword"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_TOKEN"
    assert password_hash(suite, user["user"]["id"]) == before
    assert (await fresh.post(RESET, json={"token": new, "newPassword": "R3setPassword"})).status_code == 204


async def test_expired_reset_token_is_refused(suite, fresh):
    user = await suite.register()
    await fresh.post(FORGOT, json={"email": user["email"]})
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT)
    token = link_token(mail, RESET_LINK)
    digest = hashlib.sha256(token.encode()).hexdigest()
    [(created, expires)] = suite.sql(
        "auth", "SELECT created_at, expires_at FROM one_time_tokens WHERE token_hash = %s", (digest,)
    )
    assert (expires - created).total_seconds() == 30 * 60
    suite.sql(
        "auth", "UPDATE one_time_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = %s", (digest,)
    )
    before = password_hash(suite, user["user"]["id"])
    response = await fresh.post(RESET, json={"token": token, "newPassword": "R3setPassword"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_TOKEN"
    assert password_hash(suite, user["user"]["id"]) == before
    assert (await fresh.get(ME, headers=user["headers"])).status_code == 200


async def test_reset_with_a_weak_password_keeps_the_token_usable(suite, fresh):
    user = await suite.register()
    await fresh.post(FORGOT, json={"email": user["email"]})
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT)
    token = link_token(mail, RESET_LINK)
    before = password_hash(suite, user["user"]["id"])
    weak = await fresh.post(RESET, json={"token": token, "newPassword": "weak"})
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "newPassword" in weak.json()["error"]["details"]["fields"]
    assert password_hash(suite, user["user"]["id"]) == before
    assert (await fresh.post(RESET, json={"token": token, "newPassword": "R3setPassword"})).status_code == 204


@pytest.mark.parametrize(
    "payload", [{"token": "bogus", "newPassword": "R3setPassword"}, {"token": "", "newPassword": "R3setPassword"}]
)
async def test_bad_reset_tokens(fresh, payload):
    response = await fresh.post(RESET, json=payload)
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_reset_missing_fields_is_400(fresh):
    response = await fresh.post(RESET, json={"token": "abc"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_concurrent_resets_with_one_token_exactly_one_wins(suite, fresh):
    user = await suite.register()
    await fresh.post(FORGOT, json={"email": user["email"]})
    [mail] = await wait_for_mails(suite.mail_dir, user["email"], RESET_SUBJECT)
    token = link_token(mail, RESET_LINK)
    responses = await asyncio.gather(
        *(fresh.post(RESET, json={"token": token, "newPassword": f"R3setPassword{i}"}) for i in range(5))
    )
    assert sorted(r.status_code for r in responses) == [204, 400, 400, 400, 400]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 204)
    assert await login_status(fresh, user["email"], f"R3setPassword{winner}") == 200


# -- SMTP backend -------------------------------------------------------------------------------------


async def test_smtp_backend_delivers_the_reset_email(suite):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            received.append(envelope)
            return "250 OK"

    smtp_port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    user = await suite.register()
    server = build_server(
        suite.service_settings(
            "auth",
            grpc_address="127.0.0.1:0",
            mail_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            run_migrations=False,
        )
    )
    await server.start()
    clients = ServiceClients(
        BaseShopSettings(**{**suite.common(), **identity_settings("gateway"), "auth_target": server.address}), "gateway"
    )
    try:
        await clients.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(email=user["email"]))
        for _ in range(200):
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        await clients.close()
        await server.stop(grace=0.5)
        controller.stop()
    [envelope] = received
    assert envelope.rcpt_tos == [user["email"]]
    content = envelope.content.decode()
    assert "Subject: Reset your password" in content
    assert f"{RESET_LINK}?token=" in content
