"""Forged and misused access tokens are refused at the gateway (401 UNAUTHENTICATED) and by the
services themselves when called directly (UNAUTHENTICATED): alg none, HS256 signed with the
public key, unknown kid, another key under the real kid, expired, wrong aud, wrong iss, missing
claims, not an access token, a refresh token as an access token, no token."""

from __future__ import annotations

import base64
import json
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.keys import SigningKey, generate_private_key_pem
from shop.auth.v1 import auth_pb2
from shop.catalog.v1 import catalog_pb2


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(user: dict, **overrides) -> dict:
    real = jwt.decode(user["tokens"]["accessToken"], options={"verify_signature": False})
    now = int(time.time())
    return {**real, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4()), **overrides}


def forge(suite, user: dict, attack: str) -> str:
    key = SigningKey(suite.private_key_pem)
    real_private = serialization.load_pem_private_key(suite.private_key_pem.encode(), password=None)
    assert isinstance(real_private, Ed25519PrivateKey)
    public_pem = real_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"kid": key.kid, "typ": "JWT"}
    if attack == "alg_none":
        return f"{b64({'alg': 'none', **header})}.{b64(claims_for(user, role='ADMIN'))}."
    if attack == "hs256_with_public_key":
        # PyJWT refuses PEM keys as HMAC secrets, so sign the HMAC by hand, as an attacker would.
        import hashlib
        import hmac

        signing_input = f"{b64({'alg': 'HS256', **header})}.{b64(claims_for(user, role='ADMIN'))}"
        signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    if attack == "hs256_with_jwk_x":
        import hashlib
        import hmac

        x = json.loads(key.jwks_json())["keys"][0]["x"]
        signing_input = f"{b64({'alg': 'HS256', **header})}.{b64(claims_for(user))}"
        signature = hmac.new(x.encode(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    other = serialization.load_pem_private_key(generate_private_key_pem().encode(), password=None)
    assert isinstance(other, Ed25519PrivateKey)
    if attack == "unknown_kid":
        return jwt.encode(claims_for(user), other, algorithm="EdDSA", headers={"kid": "attacker-key"})
    if attack == "other_key_real_kid":
        return jwt.encode(claims_for(user, role="ADMIN"), other, algorithm="EdDSA", headers={"kid": key.kid})
    if attack == "no_kid":
        return jwt.encode(claims_for(user), real_private, algorithm="EdDSA")
    if attack == "expired":
        past = int(time.time()) - 3600
        return jwt.encode(claims_for(user, iat=past, exp=past + 900), real_private, algorithm="EdDSA", headers=header)
    if attack == "wrong_aud":
        return jwt.encode(claims_for(user, aud="someone-else"), real_private, algorithm="EdDSA", headers=header)
    if attack == "wrong_iss":
        return jwt.encode(claims_for(user, iss="evil-issuer"), real_private, algorithm="EdDSA", headers=header)
    if attack == "no_sid":
        claims = claims_for(user)
        claims.pop("sid")
        return jwt.encode(claims, real_private, algorithm="EdDSA", headers=header)
    if attack == "not_access_typ":
        return jwt.encode(claims_for(user, typ="refresh"), real_private, algorithm="EdDSA", headers=header)
    if attack == "tampered_payload":
        head, _, signature = user["tokens"]["accessToken"].split(".")
        return f"{head}.{b64(claims_for(user, role='ADMIN'))}.{signature}"
    if attack == "refresh_token_as_access":
        return user["tokens"]["refreshToken"]
    if attack == "garbage":
        return "not.a.jwt"
    raise AssertionError(attack)


ATTACKS = [
    "alg_none",
    "hs256_with_public_key",
    "hs256_with_jwk_x",
    "unknown_kid",
    "other_key_real_kid",
    "no_kid",
    "expired",
    "wrong_aud",
    "wrong_iss",
    "no_sid",
    "not_access_typ",
    "tampered_payload",
    "refresh_token_as_access",
    "garbage",
]


@pytest.fixture(scope="module")
def victim_cache():
    return {}


async def victim(suite, cache) -> dict:
    if "user" not in cache:
        cache["user"] = await suite.register()
    return cache["user"]


async def test_the_genuine_token_works_everywhere(suite, victim_cache):
    user = await victim(suite, victim_cache)
    metadata = [("authorization", f"Bearer {user['tokens']['accessToken']}")]
    assert (await suite.http.get("/api/v1/auth/me", headers=user["headers"])).status_code == 200
    assert (await suite.http.get("/api/v1/wishlist", headers=user["headers"])).status_code == 200
    await suite.stub("auth").GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    await suite.stub("catalog").ListWishlistItems(catalog_pb2.ListWishlistItemsRequest(), metadata=metadata)


@pytest.mark.parametrize("attack", ATTACKS)
async def test_forged_tokens_are_refused_at_the_gateway(suite, victim_cache, attack):
    user = await victim(suite, victim_cache)
    token = forge(suite, user, attack)
    for path in ("/api/v1/auth/me", "/api/v1/wishlist", "/api/v1/users"):
        response = await suite.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (attack, path, response.text)
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("attack", ATTACKS)
async def test_forged_tokens_are_refused_by_services_called_directly(suite, victim_cache, attack):
    user = await victim(suite, victim_cache)
    metadata = [("authorization", f"Bearer {forge(suite, user, attack)}")]
    calls = [
        lambda: suite.stub("auth").GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata),
        lambda: suite.stub("auth").ListUsers(auth_pb2.ListUsersRequest(), metadata=metadata),
        lambda: suite.stub("catalog").ListWishlistItems(catalog_pb2.ListWishlistItemsRequest(), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call()
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED, (attack, error.value.details())


async def test_no_token_is_refused(suite):
    response = await suite.http.get("/api/v1/auth/me")
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
    for header in ("Basic abc", "Bearer", "token", "Bearer a b"):
        response = await suite.http.get("/api/v1/auth/me", headers={"Authorization": header})
        assert response.status_code == 401, header
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await suite.stub("auth").GetCurrentUser(auth_pb2.GetCurrentUserRequest())
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await suite.stub("catalog").ListWishlistItems(catalog_pb2.ListWishlistItemsRequest())
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logged_out_token_is_refused_by_auth_at_once_and_other_services_within_5s(suite):
    from services.auth.tests.helpers import wait_until

    user = await suite.register()
    metadata = [("authorization", f"Bearer {user['tokens']['accessToken']}")]
    assert (await suite.http.post("/api/v1/auth/logout", headers=user["headers"])).status_code == 204
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await suite.stub("auth").GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED

    async def catalog_refuses():
        try:
            await suite.stub("catalog").ListWishlistItems(catalog_pb2.ListWishlistItemsRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    assert await wait_until(catalog_refuses, timeout=5.0)


async def test_list_revocations_and_get_address_need_a_service_identity(suite):
    user = await suite.register()
    from grpc import aio

    from shop.auth.v1 import auth_pb2_grpc

    async with aio.insecure_channel(suite.servers["auth"].address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        for call in (
            lambda md: stub.ListRevocations(auth_pb2.ListRevocationsRequest(), metadata=md),
            lambda md: stub.GetAddress(
                auth_pb2.GetAddressRequest(user_id=user["user"]["id"], address_id=str(uuid.uuid4())), metadata=md
            ),
        ):
            for metadata in ([], [("authorization", f"Bearer {user['tokens']['accessToken']}")]):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await call(metadata)
                assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
            forged = jwt.encode(
                {
                    "iss": "shop-internal",
                    "aud": "shop-services",
                    "sub": "orders",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 60,
                },
                "wrong-secret-" * 4,
                algorithm="HS256",
            )
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call([("x-shop-service", forged)])
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    response = await suite.stub("auth").ListRevocations(auth_pb2.ListRevocationsRequest())
    assert response.as_of.seconds > 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/auth/login", {"email": "a\u0000@example.com", "password": "Passw0rdx"}),
        ("POST", "/api/v1/auth/login", {"email": "a" * 300 + "@example.com", "password": "Passw0rdx"}),
        (
            "POST",
            "/api/v1/auth/register",
            {"email": "a\u0000@example.com", "password": "Passw0rdx", "firstName": "A", "lastName": "B"},
        ),
        (
            "POST",
            "/api/v1/auth/register",
            {"email": "nul@example.com", "password": "Passw0rdx\u0000", "firstName": "A\u0000", "lastName": "B"},
        ),
        ("POST", "/api/v1/auth/password/forgot", {"email": "a\u0000@example.com"}),
        ("POST", "/api/v1/auth/email/verify", {"token": "\u0000"}),
    ],
)
async def test_hostile_strings_are_4xx_never_500(suite, method, path, body):
    response = await suite.http.request(method, path, json=body)
    assert response.status_code < 500, response.text
    assert response.status_code in (202, 400, 401), response.text


async def test_hostile_ids_are_404_never_500(suite):
    user = await suite.register()
    admin = await suite.admin()
    for method, path, headers in (
        ("DELETE", "/api/v1/auth/sessions/%00", user["headers"]),
        ("DELETE", "/api/v1/auth/sessions/" + "x" * 80, user["headers"]),
        ("PATCH", "/api/v1/users/me/addresses/%00", user["headers"]),
        ("DELETE", "/api/v1/users/me/addresses/not-a-uuid", user["headers"]),
        ("GET", "/api/v1/users/%00", admin["headers"]),
        ("PATCH", "/api/v1/users/" + "9" * 60, admin["headers"]),
    ):
        response = await suite.http.request(
            method,
            path,
            headers=headers,
            json={"role": "SELLER"}
            if path.startswith("/api/v1/users/9")
            else ({"city": "X"} if method == "PATCH" else None),
        )
        assert response.status_code == 404, (path, response.text)
    response = await suite.http.get("/api/v1/users", params={"q": "a\u0000b"}, headers=admin["headers"])
    assert response.status_code == 400
