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
    cart = retryable_methods(SERVICES["cart"][0])
    assert "GetCart" in cart and "AddCartItem" not in cart
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
