"""Caller identities (issue 11): every internal RPC is called with every service's identity, the
gateway's, a user's token (alone and as the gateway forwards it), none, and forged ones; only the
callers the shop's table names get past the check.

Forged: a token signed with a key not in the set, one whose `sub` is not its `kid` (the gateway's
key vouching for orders), one claiming orders' `kid` but signed by the gateway's key, and HS256
tokens made with the old shared secrets (what every process could mint before).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from shop.auth.v1 import auth_pb2
from shop.cart.v1 import cart_pb2
from shop.catalog.v1 import catalog_pb2
from shop.lib.clients import SERVICES, make_channel
from shop.lib.context import INTERNAL_CALLERS, TOKEN_VERIFIERS
from shop.lib.tokens import (
    SERVICE_METADATA_KEY,
    SERVICE_TOKEN_AUDIENCE,
    SERVICE_TOKEN_ISSUER,
    ServiceIdentity,
    generate_private_key_pem,
    load_private_key,
)
from shop.payments.v1 import payments_pb2
from tests.harness import IDENTITY_NAMES, ROOT, TEST_SERVICE_KEYS, service_identity

# What the issue asks for, written out again so a change to the table is a change to this test.
EXPECTED_CALLERS = {
    "payments.CreateCharge": {"orders"},
    "payments.CreateRefund": {"orders"},
    "payments.ListPayments": {"orders"},
    "payments.CheckPaymentMethod": {"orders"},
    "payments.GetPaymentRules": {"orders"},
    "payments.HandleWebhook": {"gateway"},
    "catalog.ReserveStock": {"orders"},
    "catalog.CommitReservation": {"orders"},
    "catalog.ReleaseReservation": {"orders"},
    "catalog.RestockReservation": {"orders"},
    "catalog.RecordPurchases": {"orders"},
    "catalog.BatchGetProducts": {"cart", "orders"},
    "cart.CheckoutCart": {"orders"},
    "cart.RestoreCart": {"orders"},
    "auth.GetAddress": {"orders"},
    "auth.ListRevocations": {"gateway", "catalog", "cart", "orders", "payments"},
}

# A request for each internal RPC. Whether it is valid does not matter: the caller check comes
# first, so an accepted caller gets past it (to OK or a validation error) and no other does.
REQUESTS = {
    "payments.CreateCharge": payments_pb2.CreateChargeRequest(),
    "payments.CreateRefund": payments_pb2.CreateRefundRequest(),
    "payments.ListPayments": payments_pb2.ListPaymentsRequest(),
    "payments.CheckPaymentMethod": payments_pb2.CheckPaymentMethodRequest(),
    "payments.GetPaymentRules": payments_pb2.GetPaymentRulesRequest(),
    "payments.HandleWebhook": payments_pb2.HandleWebhookRequest(provider="nobody"),
    "catalog.ReserveStock": catalog_pb2.ReserveStockRequest(),
    "catalog.CommitReservation": catalog_pb2.CommitReservationRequest(),
    "catalog.ReleaseReservation": catalog_pb2.ReleaseReservationRequest(),
    "catalog.RestockReservation": catalog_pb2.RestockReservationRequest(),
    "catalog.RecordPurchases": catalog_pb2.RecordPurchasesRequest(),
    "catalog.BatchGetProducts": catalog_pb2.BatchGetProductsRequest(),
    "cart.CheckoutCart": cart_pb2.CheckoutCartRequest(),
    "cart.RestoreCart": cart_pb2.RestoreCartRequest(),
    "auth.GetAddress": auth_pb2.GetAddressRequest(),
    "auth.ListRevocations": auth_pb2.ListRevocationsRequest(),
}
REFUSED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}
# The HMAC secrets every process held before (the development default and the test suite's).
OLD_SHARED_SECRETS = ("dev-internal-secret-change-me-0123456789", "test-internal-secret-0123456789abcdef0123")


def _claims(sub: str) -> dict:
    now = int(time.time())
    return {"iss": SERVICE_TOKEN_ISSUER, "aud": SERVICE_TOKEN_AUDIENCE, "sub": sub, "iat": now, "exp": now + 60}


def _key(name: str) -> ed25519.Ed25519PrivateKey:
    return load_private_key(TEST_SERVICE_KEYS[name])


def forged_tokens() -> dict[str, str]:
    """Every forgery claims to be orders, the caller most internal RPCs accept."""
    forged = {
        "key-not-in-the-set": ServiceIdentity.from_pem("orders", generate_private_key_pem()).mint(),
        "sub-is-not-kid": jwt.encode(_claims("orders"), _key("gateway"), algorithm="EdDSA", headers={"kid": "gateway"}),
        "kid-of-another-key": jwt.encode(
            _claims("orders"), _key("gateway"), algorithm="EdDSA", headers={"kid": "orders"}
        ),
        "alg-none": jwt.encode(_claims("orders"), "", algorithm="none", headers={"kid": "orders"}),  # "": no key
    }
    for index, secret in enumerate(OLD_SHARED_SECRETS):
        forged[f"hs256-old-shared-secret-{index}"] = jwt.encode(_claims("orders"), secret, algorithm="HS256")
        forged[f"hs256-old-shared-secret-{index}-with-kid"] = jwt.encode(
            _claims("orders"), secret, algorithm="HS256", headers={"kid": "orders"}
        )
    return forged


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {name: service_identity(name).mint() for name in IDENTITY_NAMES}


async def call(suite, rpc: str, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    service, method = rpc.split(".")
    channel = make_channel(suite.common()[f"{service}_target"], service, service_tokens=None)
    try:
        stub = SERVICES[service][1](channel)
        try:
            await getattr(stub, method)(REQUESTS[rpc], metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK
    finally:
        await channel.close()


def test_the_callers_table_is_what_the_issue_asks_for():
    assert {rpc: set(callers) for rpc, callers in INTERNAL_CALLERS.items()} == EXPECTED_CALLERS
    assert set(REQUESTS) == set(INTERNAL_CALLERS)
    assert set(TOKEN_VERIFIERS) <= set(IDENTITY_NAMES)
    for rpc in INTERNAL_CALLERS:  # every entry names a real RPC
        service, method = rpc.split(".")
        assert method in SERVICES[service][0].methods_by_name, rpc


def test_every_internal_handler_checks_its_callers_through_the_table():
    """No handler checks a service identity any other way (`require_service()` would accept any)."""
    checked = set()
    for path in sorted(Path(ROOT, "services").glob("*/servicer.py")):
        text = path.read_text()
        assert "require_service(" not in text, f"{path}: use require_caller(...) and the table"
        checked |= set(re.findall(r'require_caller\("([a-z]+\.[A-Za-z]+)"\)', text))
    assert checked == set(INTERNAL_CALLERS)


@pytest.mark.parametrize("rpc", sorted(INTERNAL_CALLERS))
async def test_only_the_named_services_may_call(suite, rpc, tokens):
    answers = {}
    for name in IDENTITY_NAMES:
        answers[name] = await call(suite, rpc, [(SERVICE_METADATA_KEY, tokens[name])])
    for name, code in answers.items():
        if name in EXPECTED_CALLERS[rpc]:
            assert code not in REFUSED, f"{rpc}: {name} (a named caller) was refused: {code}"
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{rpc}: {name} got {code}"


@pytest.mark.parametrize("rpc", sorted(INTERNAL_CALLERS))
async def test_users_nobody_and_forgeries_are_refused(suite, rpc, tokens):
    user = await user_headers(suite)
    cases = {
        "none": [],
        "user": [("authorization", user)],
        "user-through-the-gateway": [("authorization", user), (SERVICE_METADATA_KEY, tokens["gateway"])],
    }
    for name, metadata in cases.items():
        code = await call(suite, rpc, metadata)
        if name == "user-through-the-gateway" and "gateway" in EXPECTED_CALLERS[rpc]:
            assert code not in REFUSED, f"{rpc}: {name} got {code}"
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{rpc}: {name} got {code}"
    for name, token in forged_tokens().items():
        code = await call(suite, rpc, [(SERVICE_METADATA_KEY, token)])
        assert code == grpc.StatusCode.UNAUTHENTICATED, f"{rpc}: forged {name} got {code}"


_users: dict[int, str] = {}


async def user_headers(suite) -> str:
    if id(suite) not in _users:
        _users[id(suite)] = (await suite.register())["headers"]["Authorization"]
    return _users[id(suite)]


def test_make_run_gives_each_process_only_its_own_key(tmp_path, monkeypatch):
    from scripts import run_local

    monkeypatch.setattr(run_local, "VAR", tmp_path)
    env = run_local.base_env(1)
    keys = run_local.service_keys()
    assert set(keys) == set(IDENTITY_NAMES)
    assert all((path.stat().st_mode & 0o777) == 0o600 for path in keys.values())
    public = env["SHOP_SERVICE_PUBLIC_KEYS"]
    from shop.lib.tokens import ServiceKeys

    for name in IDENTITY_NAMES:
        process_env = (
            run_local.service_env(env, name, 0) if name != "gateway" else run_local.identity_env(env, "gateway", keys)
        )
        assert process_env["SHOP_SERVICE_KEY_FILE"] == str(keys[name])
        assert "SHOP_SERVICE_KEY" not in process_env
        identity = ServiceIdentity.from_pem(name, Path(process_env["SHOP_SERVICE_KEY_FILE"]).read_text())
        assert ServiceKeys.parse(public).verify(identity.mint()) == name
    assert run_local.base_env(1)["SHOP_SERVICE_PUBLIC_KEYS"] == public  # made once, then reused
