"""gRPC-level tests of the auth service: admin bootstrap, ListRevocations, GetJwks, and the whole
flow on SQLite (the embedded database of `make run`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.auth.server import Runtime, build_server
from services.auth.tests.helpers import new_email
from shop.auth.v1 import auth_pb2
from shop.lib.clients import ServiceClients
from shop.lib.settings import BaseShopSettings
from tests.harness import identity_settings


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


async def test_admin_bootstrap_creates_once_and_never_changes_a_password(suite):
    email = new_email()
    runtime = Runtime(
        suite.service_settings(
            "auth", admin_email=f"  {email.upper()} ", admin_password="Adm1nPassword", bcrypt_rounds=4
        )
    )
    try:
        await runtime.bootstrap_admin()
        [(role, status, verified)] = suite.sql(
            "auth", "SELECT role, status, email_verified FROM users WHERE email = %s", (email,)
        )
        assert (role, status, verified) == ("ADMIN", "ACTIVE", True)
        login = await suite.http.post("/api/v1/auth/login", json={"email": email, "password": "Adm1nPassword"})
        assert login.status_code == 200 and login.json()["data"]["user"]["role"] == "ADMIN"
        # (read after the login: it re-hashes the cost-4 hash at the gateway's auth server's cost)
        [(first_hash,)] = suite.sql("auth", "SELECT password_hash FROM users WHERE email = %s", (email,))
    finally:
        await runtime.db.dispose()
    again = Runtime(
        suite.service_settings("auth", admin_email=email, admin_password="Different1Password", bcrypt_rounds=4)
    )
    try:
        await again.bootstrap_admin()
    finally:
        await again.db.dispose()
    assert suite.sql("auth", "SELECT password_hash FROM users WHERE email = %s", (email,)) == [(first_hash,)]


async def test_admin_bootstrap_does_nothing_without_a_password_and_refuses_a_weak_one(suite):
    email = new_email()
    for password in ("", "weak"):
        runtime = Runtime(suite.service_settings("auth", admin_email=email, admin_password=password, bcrypt_rounds=4))
        try:
            if password:
                with pytest.raises(RuntimeError, match="password policy"):
                    await runtime.bootstrap_admin()
            else:
                await runtime.bootstrap_admin()
        finally:
            await runtime.db.dispose()
    assert suite.sql("auth", "SELECT count(*) FROM users WHERE email = %s", (email,)) == [(0,)]


async def test_sweep_deletes_only_stale_attempts_and_tokens(suite):
    fresh_email, stale_email = new_email(), new_email()
    user = await suite.register()
    suite.sql(
        "auth",
        "INSERT INTO login_attempts (id, email, attempted_at) VALUES "
        "(gen_random_uuid()::text, %s, now()), (gen_random_uuid()::text, %s, now() - interval '16 minutes')",
        (fresh_email, stale_email),
    )
    suite.sql(
        "auth",
        "UPDATE one_time_tokens SET expires_at = now() - interval '2 days' WHERE user_id = %s",
        (user["user"]["id"],),
    )
    runtime = Runtime(suite.service_settings("auth", bcrypt_rounds=4))
    try:
        assert await runtime.sweep_once() >= 2
    finally:
        await runtime.db.dispose()
    assert suite.sql(
        "auth", "SELECT email FROM login_attempts WHERE email IN (%s, %s)", (fresh_email, stale_email)
    ) == [(fresh_email,)]
    assert suite.sql("auth", "SELECT count(*) FROM one_time_tokens WHERE user_id = %s", (user["user"]["id"],)) == [(0,)]


async def test_list_revocations_reports_revoked_sessions_since_a_time(suite):
    before = datetime.now(UTC) - timedelta(seconds=1)
    user = await suite.register()
    await suite.http.post("/api/v1/auth/logout", headers=user["headers"])
    import jwt

    sid = jwt.decode(user["tokens"]["accessToken"], options={"verify_signature": False})["sid"]
    response = await suite.stub("auth").ListRevocations(auth_pb2.ListRevocationsRequest(since=stamp(before)))
    assert sid in {s.session_id for s in response.sessions}
    as_of = response.as_of.ToDatetime(tzinfo=UTC)
    assert as_of <= datetime.now(UTC)
    # asking from as_of onwards still overlaps a little (late commits are never missed)
    later = await suite.stub("auth").ListRevocations(
        auth_pb2.ListRevocationsRequest(since=stamp(datetime.now(UTC) + timedelta(minutes=1)))
    )
    assert list(later.sessions) == []


async def test_get_jwks_is_public(suite):
    response = await suite.stub("auth").GetJwks(auth_pb2.GetJwksRequest())
    [key] = json.loads(response.jwks_json)["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA" and key["use"] == "sig"
    assert key["kid"] and "d" not in key


async def test_the_whole_flow_runs_on_sqlite(tmp_path, suite):
    settings = suite.service_settings(
        "auth",
        database_url=f"sqlite:///{tmp_path}/auth.db",
        grpc_address="127.0.0.1:0",
        bcrypt_rounds=4,
        mail_dir=str(tmp_path / "mail"),
    )
    server = build_server(settings)
    await server.start()
    clients = ServiceClients(
        BaseShopSettings(**{**suite.common(), **identity_settings("gateway"), "auth_target": server.address}), "gateway"
    )
    try:
        stub = clients.auth
        email = new_email()
        registered = await stub.Register(
            auth_pb2.RegisterRequest(
                email=email,
                password="Passw0rdx",
                first_name="Sq",
                last_name="Lite",
                client=auth_pb2.ClientInfo(user_agent="ua", ip="10.0.0.1"),
            )
        )
        assert registered.user.role == auth_pb2.ROLE_CUSTOMER
        metadata = [("authorization", f"Bearer {registered.tokens.access_token}")]
        me = await stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
        assert me.user.email == email
        results = await asyncio.gather(
            *(
                stub.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=registered.tokens.refresh_token))
                for _ in range(4)
            ),
            return_exceptions=True,
        )
        assert sum(1 for r in results if not isinstance(r, Exception)) == 1
        assert all(
            isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.UNAUTHENTICATED
            for r in results
            if isinstance(r, Exception)
        )
        created = await stub.CreateAddress(
            auth_pb2.CreateAddressRequest(
                address=auth_pb2.Address(
                    label="Home", first_name="A", last_name="B", line1="1 St", city="C", postal_code="1", country="fr"
                )
            ),
            metadata=[
                (
                    "authorization",
                    f"Bearer {(await stub.Login(auth_pb2.LoginRequest(email=email, password='Passw0rdx'))).tokens.access_token}",
                )
            ],
        )  # noqa: E501
        assert created.address.is_default and created.address.country == "FR"
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Login(auth_pb2.LoginRequest(email=email, password="Wr0ngPassword"))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Login(auth_pb2.LoginRequest(email=email, password="Passw0rdx"))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await clients.close()
        await server.stop(grace=0.5)
