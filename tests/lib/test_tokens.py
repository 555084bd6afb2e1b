"""Access-token verification: pinned algorithms, known kid, required claims, revocation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shop.lib.errors import Unauthenticated
from shop.lib.settings import BaseShopSettings
from shop.lib.tokens import (
    SERVICE_TOKEN_AUDIENCE,
    SERVICE_TOKEN_ISSUER,
    AccessTokenVerifier,
    KeySet,
    RevokedSessions,
    ServiceIdentity,
    ServiceKeys,
    generate_private_key_pem,
    load_private_key,
    public_key_pem,
    public_keys_json,
)

ISS, AUD = "shop-auth", "shop"


@pytest.fixture(scope="module")
def key():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def jwks(key):
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "EdDSA", "use": "sig"}]})


def claims(**overrides):
    now = int(time.time())
    base = {
        "iss": ISS,
        "aud": AUD,
        "sub": "u1",
        "jti": uuid.uuid4().hex,
        "sid": "s1",
        "role": "CUSTOMER",
        "typ": "access",
        "iat": now,
        "exp": now + 900,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key, payload, kid="k1"):
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def verifier(jwks, revoked=None):
    return AccessTokenVerifier(KeySet.static(jwks), issuer=ISS, audience=AUD, revoked=revoked)


async def test_valid_token(key, jwks):
    caller = await verifier(jwks).verify(sign(key, claims()))
    assert (caller.user_id, caller.session_id, caller.role) == ("u1", "s1", "CUSTOMER")


@pytest.mark.parametrize(
    "mutation",
    [
        "expired",
        "wrong_aud",
        "wrong_iss",
        "missing_sid",
        "missing_jti",
        "not_access",
        "unknown_kid",
        "alg_none",
        "hs256_public_key",
        "other_key",
        "garbage",
        "revoked",
    ],
)
async def test_attacks_are_refused(key, jwks, mutation):
    revoked = RevokedSessions()
    token = sign(key, claims())
    if mutation == "expired":
        token = sign(key, claims(iat=int(time.time()) - 2000, exp=int(time.time()) - 1000))
    elif mutation == "wrong_aud":
        token = sign(key, claims(aud="other"))
    elif mutation == "wrong_iss":
        token = sign(key, claims(iss="evil"))
    elif mutation == "missing_sid":
        token = sign(key, claims(sid=None))
    elif mutation == "missing_jti":
        token = sign(key, claims(jti=None))
    elif mutation == "not_access":
        token = sign(key, claims(typ="refresh"))
    elif mutation == "unknown_kid":
        token = sign(key, claims(), kid="k2")
    elif mutation == "alg_none":
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode()).rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
        token = (header + b"." + body + b".").decode()
    elif mutation == "hs256_public_key":
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode()).rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
        import hashlib
        import hmac

        signature = base64.urlsafe_b64encode(
            hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
        ).rstrip(b"=")
        token = (header + b"." + body + b"." + signature).decode()
    elif mutation == "other_key":
        token = sign(ed25519.Ed25519PrivateKey.generate(), claims())
    elif mutation == "garbage":
        token = "not.a.jwt"
    elif mutation == "revoked":
        revoked.add("s1")
    with pytest.raises(Unauthenticated):
        await verifier(jwks, revoked).verify(token)


async def test_revocations_learned_by_polling(key, jwks):
    from datetime import UTC, datetime

    revoked = RevokedSessions()
    seen_since = []

    async def fetch(since):
        seen_since.append(since)
        return ["s1"], datetime.now(UTC)

    await revoked.poll_once(fetch)
    with pytest.raises(Unauthenticated):
        await verifier(jwks, revoked).verify(sign(key, claims()))
    await revoked.poll_once(fetch)
    assert seen_since[1] > seen_since[0]


async def test_writes_fail_closed_while_revocations_are_stale(key, jwks):
    from datetime import UTC, datetime

    from shop.lib.errors import Unavailable

    revoked = RevokedSessions(max_staleness=30)
    check = verifier(jwks, revoked)
    token = sign(key, claims(sid="s2"))
    # No poll has succeeded yet: reads pass, writes are refused until auth has answered once.
    assert (await check.verify(token)).session_id == "s2"
    with pytest.raises(Unavailable) as refused:
        await check.verify(token, write=True)
    assert refused.value.code == "REVOCATIONS_UNAVAILABLE" and refused.value.retry_after

    answers: list[list[str]] = []  # revoked session ids, one list per poll

    async def fetch(since):
        if not answers:
            raise ConnectionError("auth is unreachable")
        return answers.pop(0), datetime.now(UTC)

    revoked._fetch = fetch  # as poll_forever registers it
    with pytest.raises(Unavailable):
        await check.verify(token, write=True)  # the on-demand poll failed too
    # A write on a stale set polls once on the spot (a process whose first poll has not answered).
    answers.append([])
    assert (await check.verify(token, write=True)).session_id == "s2"
    assert not revoked.stale

    # Auth unreachable for longer than the bound: writes refused again, reads still served.
    revoked._fresh_at = time.monotonic() - 31
    with pytest.raises(Unavailable):
        await check.verify(token, write=True)
    assert (await check.verify(token)).session_id == "s2"
    answers.append(["s2"])  # auth answers again, and the session was revoked meanwhile
    with pytest.raises(Unauthenticated):
        await check.verify(token, write=True)


def test_a_revocation_is_remembered_longer_than_any_configurable_token_lifetime():
    """The memory follows the bound of auth's lifetime setting (read from the field itself), plus
    the leeway a verifier gives an expired token: it covers every lifetime auth accepts."""
    import annotated_types

    from gateway.shared import REVOKED_TTL_SECONDS
    from services.auth.config import AuthSettings
    from shop.lib import tokens

    field = AuthSettings.model_fields["access_token_ttl_seconds"]
    [bound] = [item.le for item in field.metadata if isinstance(item, annotated_types.Le)]
    assert isinstance(bound, int)
    longest_use = bound + tokens._LEEWAY_SECONDS  # a token is accepted until exp + leeway
    assert tokens.REVOCATION_MEMORY.total_seconds() >= longest_use
    assert REVOKED_TTL_SECONDS >= longest_use  # what gateway replicas share through Redis


SERVICE_PEMS = {name: generate_private_key_pem() for name in ("gateway", "orders", "payments")}


def service_claims(sub="orders", **overrides):
    now = int(time.time())
    return {
        "iss": SERVICE_TOKEN_ISSUER,
        "aud": SERVICE_TOKEN_AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 60,
        **overrides,
    }


def test_service_identities_each_service_mints_only_its_own():
    keys = ServiceKeys.parse(public_keys_json(SERVICE_PEMS))
    orders = ServiceIdentity.from_pem("orders", SERVICE_PEMS["orders"])
    token = orders.mint()
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": "orders", "typ": "JWT"}
    assert keys.verify(token) == "orders"
    assert orders.mint() == token  # reused while more than half its lifetime is left
    # The gateway's key signing a token that says "orders", under either kid.
    gateway_key = load_private_key(SERVICE_PEMS["gateway"])
    for kid in ("orders", "gateway"):
        forged = jwt.encode(service_claims("orders"), gateway_key, algorithm="EdDSA", headers={"kid": kid})
        with pytest.raises(Unauthenticated):
            keys.verify(forged)
    # A key not in the set, an unknown kid, the old shared-secret HS256 token, alg none.
    stranger = ServiceIdentity.from_pem("orders", generate_private_key_pem())
    with pytest.raises(Unauthenticated):
        keys.verify(stranger.mint())
    with pytest.raises(Unauthenticated):
        keys.verify(ServiceIdentity.from_pem("tests", generate_private_key_pem()).mint())
    with pytest.raises(Unauthenticated):
        keys.verify(jwt.encode(service_claims(), "s" * 40, algorithm="HS256", headers={"kid": "orders"}))
    unsigned = jwt.encode(service_claims(), "", algorithm="none", headers={"kid": "orders"})  # "": no key
    with pytest.raises(Unauthenticated):
        keys.verify(unsigned)
    with pytest.raises(Unauthenticated):
        keys.verify("not a token")


@pytest.mark.parametrize(
    "claims",
    [
        service_claims(exp=int(time.time()) - 60),
        service_claims(aud="shop"),
        service_claims(iss="someone"),
        {k: v for k, v in service_claims().items() if k != "exp"},
    ],
    ids=["expired", "audience", "issuer", "no-exp"],
)
def test_service_identity_claims_are_checked(claims):
    keys = ServiceKeys.parse(public_keys_json(SERVICE_PEMS))
    key = load_private_key(SERVICE_PEMS["orders"])
    assert keys.verify(jwt.encode(service_claims(), key, algorithm="EdDSA", headers={"kid": "orders"})) == "orders"
    with pytest.raises(Unauthenticated):
        keys.verify(jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "orders"}))


def test_service_public_keys_as_a_jwks_and_as_pem_with_escaped_newlines():
    public = ed25519.Ed25519PrivateKey.generate()
    pem = public.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    x = (
        base64.urlsafe_b64encode(
            public.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        .rstrip(b"=")
        .decode()
    )
    jwks = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "cart", "x": x}]})
    identity = ServiceIdentity.from_pem("cart", pem.replace("\n", "\\n"))
    assert ServiceKeys.parse(jwks).verify(identity.mint()) == "cart"
    escaped = json.dumps({"cart": public_key_pem(pem).replace("\n", "\\n")})
    assert ServiceKeys.parse(escaped).verify(identity.mint()) == "cart"
    assert ServiceKeys.parse("").names == frozenset()


def test_service_identity_from_settings_and_a_throwaway_outside_production(tmp_path):
    key_file = tmp_path / "key.pem"
    key_file.write_text(SERVICE_PEMS["payments"])
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(public_keys_json(SERVICE_PEMS))
    settings = BaseShopSettings(service_key_file=str(key_file), service_public_keys_file=str(keys_file))
    token = ServiceIdentity.from_settings(settings, "payments").mint()
    assert ServiceKeys.from_settings(settings).verify(token) == "payments"
    with pytest.raises(ValueError, match="not the key"):  # a key that is not the one the set lists
        ServiceIdentity.from_settings(
            BaseShopSettings(service_key_file=str(key_file), service_public_keys_file=str(keys_file)), "orders"
        )
    throwaway = ServiceIdentity.from_settings(BaseShopSettings(env="test"), "payments")
    with pytest.raises(Unauthenticated):
        ServiceKeys.from_settings(settings).verify(throwaway.mint())


async def test_a_verified_token_is_checked_once_then_kept(key, jwks, monkeypatch):
    from shop.lib import tokens

    decoded: list[str] = []
    real_decode = tokens.jwt.decode

    def counting_decode(token, *args, **kwargs):
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counting_decode)
    check = verifier(jwks)
    token = sign(key, claims())
    for _ in range(3):
        assert (await check.verify(token)).user_id == "u1"
    assert len(decoded) == 1


async def test_a_kept_token_is_still_refused_once_its_session_is_revoked(key, jwks):
    revoked = RevokedSessions()
    check = verifier(jwks, revoked)
    token = sign(key, claims(sid="s-kept"))
    await check.verify(token)
    revoked.add("s-kept")
    with pytest.raises(Unauthenticated):
        await check.verify(token)


async def test_a_kept_token_expires_when_the_token_does(key, jwks, monkeypatch):
    from shop.lib import tokens

    monkeypatch.setattr(tokens, "_LEEWAY_SECONDS", 0)
    check = verifier(jwks)
    token = sign(key, claims(exp=int(time.time()) + 2))
    await check.verify(token)
    await asyncio.sleep(max(0.0, (int(time.time()) + 2) - time.time()) + 0.2)
    with pytest.raises(Unauthenticated):
        await check.verify(token)


async def test_a_kept_token_is_refused_once_its_key_leaves_the_key_set(key, jwks):
    check = verifier(jwks)
    token = sign(key, claims())
    await check.verify(token)
    other = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(other.public_key()))
    check.keys = KeySet.static(json.dumps({"keys": [{**jwk, "kid": "k2", "alg": "EdDSA", "use": "sig"}]}))
    with pytest.raises(Unauthenticated):
        await check.verify(token)
