"""Access-token verification: pinned algorithms, known kid, required claims, revocation."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shop.lib.errors import Unauthenticated
from shop.lib.tokens import AccessTokenVerifier, KeySet, RevokedSessions, ServiceTokens

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
    base = {"iss": ISS, "aud": AUD, "sub": "u1", "jti": uuid.uuid4().hex, "sid": "s1", "role": "CUSTOMER",
            "typ": "access", "iat": now, "exp": now + 900}
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
    ["expired", "wrong_aud", "wrong_iss", "missing_sid", "missing_jti", "not_access", "unknown_kid", "alg_none",
     "hs256_public_key", "other_key", "garbage", "revoked"],
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
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode()).rstrip(b"=")
        body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
        import hashlib
        import hmac

        signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
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

    from shop.lib import tokens
    from shop.lib.errors import Unavailable

    revoked = RevokedSessions(max_staleness=30)
    check = verifier(jwks, revoked)
    token = sign(key, claims(sid="s2"))
    # No poll has succeeded yet: reads pass, writes are refused until auth has answered once.
    assert (await check.verify(token)).session_id == "s2"
    with pytest.raises(Unavailable) as refused:
        await check.verify(token, write=True)
    assert refused.value.code == "REVOCATIONS_UNAVAILABLE" and refused.value.retry_after

    answers = []

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
    # A revocation is remembered for the longest access-token lifetime auth may use.
    assert tokens.REVOCATION_MEMORY.total_seconds() >= tokens.MAX_ACCESS_TOKEN_TTL_SECONDS


def test_service_tokens():
    tokens = ServiceTokens("s" * 40, "orders")
    assert tokens.verify(tokens.mint()) == "orders"
    with pytest.raises(Unauthenticated):
        ServiceTokens("t" * 40, "x").verify(tokens.mint())
    with pytest.raises(Unauthenticated):
        tokens.verify(jwt.encode({"sub": "orders"}, "s" * 40, algorithm="HS256"))
