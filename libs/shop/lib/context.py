"""Per-request context (request id, caller, deadline) carried in contextvars.

The server interceptor sets it for every RPC; the client interceptor reads it to propagate the
request id and never give a callee more time than the caller has left.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from dataclasses import dataclass, field

from shop.lib.errors import PermissionDenied, Unauthenticated

ROLE_CUSTOMER = "CUSTOMER"
ROLE_SELLER = "SELLER"
ROLE_ADMIN = "ADMIN"


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user (from a verified access token), a service, or nobody."""

    user_id: str | None = None
    role: str | None = None
    session_id: str | None = None
    token_id: str | None = None
    service: str | None = None
    claims: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_user(self) -> bool:
        return self.user_id is not None

    @property
    def is_service(self) -> bool:
        return self.service is not None

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


ANONYMOUS = Caller()

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
caller_var: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller", default=ANONYMOUS)
# time.monotonic() at which the incoming RPC's deadline passes, or None.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


def current_caller() -> Caller:
    return caller_var.get()


def time_left() -> float | None:
    deadline = deadline_var.get()
    return None if deadline is None else deadline - time.monotonic()


def require_user() -> Caller:
    caller = caller_var.get()
    if not caller.is_user:
        raise Unauthenticated("Authentication required.")
    return caller


def require_role(*roles: str) -> Caller:
    caller = require_user()
    if caller.role not in roles:
        raise PermissionDenied("You do not have permission to do this.")
    return caller


def require_admin() -> Caller:
    return require_role(ROLE_ADMIN)


def require_service(*names: str) -> Caller:
    """Internal RPCs: only a service identity (optionally one of `names`) may call."""
    caller = caller_var.get()
    if not caller.is_service:
        raise PermissionDenied("This operation is internal to the shop's services.")
    if names and caller.service not in names:
        raise PermissionDenied("This service may not call this operation.")
    return caller


# The services whose tokens are verified with auth's JWKS and revocation feed.
TOKEN_VERIFIERS = ("gateway", "catalog", "cart", "orders", "payments")

# Who may call each internal RPC ("service.Method" -> the callers' service names), one table for
# the whole shop: a handler's first line is `require_caller("payments.CreateCharge")`. An RPC not
# listed here is a user-facing one (its handler checks the user). Each service's identity is its
# own key (shop.lib.tokens), so a name here means that process and nothing else.
INTERNAL_CALLERS: dict[str, tuple[str, ...]] = {
    # auth
    "auth.GetAddress": ("orders",),  # the shipping address copied into an order at checkout
    "auth.ListRevocations": TOKEN_VERIFIERS,
    # catalog
    "catalog.BatchGetProducts": ("cart", "orders"),  # pricing a cart; the checkout's lines
    "catalog.ReserveStock": ("orders",),
    "catalog.CommitReservation": ("orders",),
    "catalog.ReleaseReservation": ("orders",),
    "catalog.RestockReservation": ("orders",),
    "catalog.RecordPurchases": ("orders",),
    # cart
    "cart.CheckoutCart": ("orders",),
    "cart.RestoreCart": ("orders",),
    # payments
    "payments.CheckPaymentMethod": ("orders",),
    "payments.GetPaymentRules": ("orders",),
    "payments.CreateCharge": ("orders",),
    "payments.ListPayments": ("orders",),
    "payments.CreateRefund": ("orders",),
    "payments.HandleWebhook": ("gateway",),  # the provider's webhooks arrive at the public edge
}


def require_caller(rpc: str) -> Caller:
    """The check of an internal RPC: the caller is one of the services INTERNAL_CALLERS names."""
    return require_service(*INTERNAL_CALLERS[rpc])
