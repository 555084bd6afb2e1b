from __future__ import annotations

import json

import pytest

from shop.lib.clients import SERVICES, grpc_target, retryable_methods, service_config
from shop.lib.settings import BaseShopSettings


def test_targets():
    assert grpc_target("127.0.0.1:50052") == "ipv4:127.0.0.1:50052"
    assert grpc_target("127.0.0.1:50052,127.0.0.1:50062") == "ipv4:127.0.0.1:50052,127.0.0.1:50062"
    assert grpc_target("catalog:50051") == "dns:///catalog:50051"
    assert grpc_target("dns:///catalog.shop.svc.cluster.local:50051") == "dns:///catalog.shop.svc.cluster.local:50051"
    with pytest.raises(ValueError):
        grpc_target("a:1,b:2")


def test_retry_policy_covers_reads_and_idempotent_writes_only():
    catalog = retryable_methods(SERVICES["catalog"][0])
    assert {"ListProducts", "GetProduct", "BatchGetProducts", "ReserveStock", "CommitReservation"} <= set(catalog)
    assert "CreateReview" not in catalog
    # The rule: reads, and writes whose request carries an idempotency key; nothing else.
    for descriptor, _ in SERVICES.values():
        retryable = set(retryable_methods(descriptor))
        for method in descriptor.methods:
            keyed = {"request_id", "reservation_id"} & set(method.input_type.fields_by_name)
            if method.name.startswith(("Get", "List", "BatchGet", "Watch")) or keyed:
                assert method.name in retryable, method.full_name
    assert "GetCart" in retryable_methods(SERVICES["cart"][0])
    assert "Login" not in retryable_methods(SERVICES["auth"][0])
    assert "CreateCharge" in retryable_methods(SERVICES["payments"][0])
    config = json.loads(service_config(SERVICES["catalog"][0]))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_production_refuses_default_secrets():
    with pytest.raises(ValueError):
        BaseShopSettings(env="production")
    with pytest.raises(ValueError):
        BaseShopSettings(env="production", internal_secret="short", page_token_secret="x" * 40)
    ok = BaseShopSettings(env="production", internal_secret="i" * 40, page_token_secret="p" * 40)
    assert ok.is_production
