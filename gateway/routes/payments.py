"""Payment provider webhooks: the raw body and the signature header go to the payments service,
which verifies and applies the event (API.md "Orders and payments")."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.deps import GatewayState, get_state
from gateway.errors import ApiError
from gateway.openapi import errors
from gateway.schemas.common import data, envelope
from gateway.schemas.system import WebhookResult
from shop.payments.v1 import payments_pb2

router = APIRouter(prefix="/api/v1", tags=["payments"])

# The header that carries each provider's signature (`t=<unix seconds>,v1=<hex HMAC-SHA256>`).
SIGNATURE_HEADERS = {"stripe": "stripe-signature", "sandbox": "sandbox-signature"}


@router.post(
    "/payments/webhooks/{provider}",
    operation_id="payments-receive-webhook",
    response_model=envelope(WebhookResult),
    summary="Receive a payment provider's webhook event",
    description=(
        "Called by the payment provider, not by frontends. The raw JSON body is verified with the "
        "signature header (`Stripe-Signature` for `stripe`, `Sandbox-Signature` for `sandbox`): "
        '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`, 300 s tolerance. '
        "Each event id is applied once; a repeat answers 200 with `duplicate: true` and changes nothing."
    ),
    responses={
        200: {"description": "Event accepted (or already processed)."},
        **errors(
            400,
            404,
            409,
            e400="INVALID_SIGNATURE or INVALID_EVENT; nothing changed.",
            e404="UNKNOWN_PROVIDER",
            e409="PAYMENT_NOT_READY: the event's payment is not recorded yet; deliver it again.",
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        }
    },
)
async def receive_webhook(provider: str, request: Request, state: GatewayState = Depends(get_state)):
    header = SIGNATURE_HEADERS.get(provider)
    if header is None:
        raise ApiError(404, "UNKNOWN_PROVIDER", "No such payment provider.")
    signature = request.headers.get(header, "")
    if not signature:
        raise ApiError(400, "INVALID_SIGNATURE", f"The {header.title()} header is missing.")
    payload = await request.body()
    response = await state.clients.payments.HandleWebhook(
        payments_pb2.HandleWebhookRequest(provider=provider, payload=payload, signature=signature)
    )
    return data({"eventId": response.event_id, "type": response.event_type, "duplicate": response.duplicate})
