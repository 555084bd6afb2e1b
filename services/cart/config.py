"""Settings of the cart service (SHOP_* environment variables)."""

from __future__ import annotations

from pydantic import Field

from shop.lib.settings import ServiceSettings


class CartSettings(ServiceSettings):
    database_url: str = "sqlite:///var/cart.db"
    grpc_address: str = "127.0.0.1:50053"
    # Guest carts (keyed by X-Session-ID) are deleted this many days after their last change.
    guest_cart_ttl_days: int = Field(default=30, ge=1)
    # AddCartItem idempotency keys are kept this many hours (API.md: at least 24 h).
    idempotency_ttl_hours: int = Field(default=48, ge=24)
    # CheckoutCart records (the lines a checkout took, for repeats and RestoreCart) are kept this
    # many days; a checkout is finished or compensated by orders long before.
    checkout_ttl_days: int = Field(default=7, ge=1)
    # How often the background sweep looks for expired guest carts, seconds.
    sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    # The currency every cart is priced in; a product priced in another currency cannot be added.
    currency: str = Field(default="USD", min_length=3, max_length=3)
    # Distinct products one cart may hold (at most the catalog's BatchGetProducts limit of 200).
    max_cart_lines: int = Field(default=100, ge=1, le=200)
    # Comma-separated service identities that may name a user's cart by `owner.user_id` without
    # the user's token (checkout). Guest carts (`owner.session_id`) may be named by any service.
    user_owner_services: str = "orders"

    @property
    def user_owner_service_set(self) -> set[str]:
        return {name.strip() for name in self.user_owner_services.split(",") if name.strip()}
