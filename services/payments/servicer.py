"""RPC handlers of the payments service, a thin adapter: check the caller (a service identity),
validate the request (`domain.py`), call the use case (`charges.py`, `refunds.py`, `webhooks.py`),
map the answer (`mapping.py`). The use cases keep the rule that no database transaction is open
while a provider call is in flight."""

from __future__ import annotations

from services.payments import charges, domain, refunds, webhooks
from services.payments.mapping import payment_to_proto, refund_to_proto
from shop.lib.context import require_caller
from shop.lib.errors import ValidationError
from shop.payments.v1 import payments_pb2, payments_pb2_grpc


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, runtime) -> None:
        self.runtime = runtime

    async def CheckPaymentMethod(self, request, context):
        require_caller("payments.CheckPaymentMethod")
        charges.check_payment_method(self.runtime, request.method, request.token)
        return payments_pb2.CheckPaymentMethodResponse()

    async def GetPaymentRules(self, request, context):
        require_caller("payments.GetPaymentRules")  # CheckPaymentMethod's rule, as data
        return payments_pb2.GetPaymentRulesResponse(
            token_pattern=self.runtime.provider.token_pattern, max_age_seconds=charges.PAYMENT_RULES_MAX_AGE_SECONDS
        )

    async def CreateCharge(self, request, context):
        require_caller("payments.CreateCharge")
        charge = domain.validate_charge(
            request.order_id,
            request.user_id,
            request.amount_cents,
            request.currency_code,
            request.method,
            request.token,
        )
        payment = await charges.create_charge(self.runtime, charge)
        return payments_pb2.CreateChargeResponse(payment=payment_to_proto(payment))

    async def ListPayments(self, request, context):
        require_caller("payments.ListPayments")
        if not request.order_id:
            raise ValidationError.single("orderId", "is required")
        payment, refund_rows = await charges.list_payments(self.runtime, request.order_id)
        return payments_pb2.ListPaymentsResponse(
            payments=[payment_to_proto(payment)] if payment is not None else [],
            refunds=[refund_to_proto(refund) for refund in refund_rows],
        )

    async def CreateRefund(self, request, context):
        require_caller("payments.CreateRefund")
        domain.validate_refund(request.order_id, request.amount_cents, request.reason, request.request_id)
        payment, refund = await refunds.create_refund(
            self.runtime, request.order_id, request.amount_cents, request.reason, request.request_id
        )
        return payments_pb2.CreateRefundResponse(refund=refund_to_proto(refund), payment=payment_to_proto(payment))

    async def HandleWebhook(self, request, context):
        require_caller("payments.HandleWebhook")
        event, duplicate = await webhooks.handle_webhook(
            self.runtime, request.provider, bytes(request.payload), request.signature
        )
        return payments_pb2.HandleWebhookResponse(event_id=event.id, duplicate=duplicate, event_type=event.type)
