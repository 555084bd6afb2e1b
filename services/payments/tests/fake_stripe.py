"""A local HTTP server that answers like Stripe's API for what the Stripe provider uses
(POST /v1/payment_intents with confirm=true, POST /v1/refunds), with Stripe's idempotency:
a repeated Idempotency-Key replays the first response. Stdlib only (http.server in a thread)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

CARDS = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_chargeDeclined": ("visa", "0002", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
    # not a real Stripe test card: an intent that stays "processing" until `settle()`
    "pm_card_processing": ("visa", "1111", "processing"),
}
CARDS.update({"tok_" + name[len("pm_card_") :]: card for name, card in list(CARDS.items())})


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]


@dataclass
class FakeStripe:
    requests: list[Recorded] = field(default_factory=list)
    # (path, idempotency key) → (status, body): Stripe replays the first response for a key.
    replies: dict[tuple[str, str], tuple[int, dict]] = field(default_factory=dict)
    intents: dict[str, dict] = field(default_factory=dict)
    created_intents: int = 0
    created_refunds: int = 0
    fail_with: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, headers: dict[str, str], params: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            self.requests.append(Recorded(method, path, headers, params))
            if self.fail_with:
                return self.fail_with, {"error": {"type": "api_error", "message": "Stripe is down."}}
            if headers.get("authorization") != "Bearer sk_test_fake":
                return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
            key = headers.get("idempotency-key", "")
            if key and (path, key) in self.replies:
                return self.replies[(path, key)]
            if method == "POST" and path == "/v1/payment_intents":
                reply = self.create_intent(params)
            elif method == "POST" and path == "/v1/refunds":
                reply = self.create_refund(params)
            elif method == "GET" and path.startswith("/v1/payment_intents/"):
                intent = self.intents.get(path.rsplit("/", 1)[-1])
                reply = (
                    (200, intent)
                    if intent
                    else (404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}})
                )
            else:
                reply = (404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized {path}"}})
            if key:
                self.replies[(path, key)] = reply
            return reply

    def create_intent(self, params: dict[str, str]) -> tuple[int, dict]:
        param = "payment_method" if "payment_method" in params else "payment_method_data[card][token]"
        token = params.get(param, "")
        if params.get("confirm") != "true":
            return 400, {"error": {"type": "invalid_request_error", "message": "this fake only confirms at once"}}
        if token not in CARDS:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": param,
                    "message": f"No such PaymentMethod: '{token}'",
                }
            }
        self.created_intents += 1
        brand, last4, decline = CARDS[token]
        amount = int(params["amount"])
        method = {
            "id": f"pm_{uuid.uuid4().hex[:14]}",
            "object": "payment_method",
            "type": "card",
            "card": {"brand": brand, "last4": last4},
        }
        intent_id = f"pi_{uuid.uuid4().hex[:24]}"
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0 if decline else amount,
            "currency": params["currency"],
            "status": "requires_payment_method" if decline else "succeeded",
            "metadata": {k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")},
            "payment_method": method if "expand[0]" in params else method["id"],
            "refunded": 0,
        }
        self.intents[intent_id] = intent
        if decline == "processing":
            intent.update(status="processing", amount_received=0)
            return 200, intent
        if decline:
            return 402, {
                "error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": decline,
                    "message": "Your card was declined.",
                    "payment_intent": intent,
                    "payment_method": method,
                }
            }
        return 200, intent

    def settle(self, intent_id: str) -> None:
        """A processing intent succeeds (what Stripe does later, announced by a webhook)."""
        with self.lock:
            self.intents[intent_id].update(status="succeeded", amount_received=self.intents[intent_id]["amount"])

    def create_refund(self, params: dict[str, str]) -> tuple[int, dict]:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": "No such payment_intent",
                }
            }
        amount = int(params.get("amount") or intent["amount_received"] - intent["refunded"])
        if amount > intent["amount_received"] - intent["refunded"]:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "amount_too_large",
                    "message": "Refund amount is greater than unrefunded amount",
                }
            }
        intent["refunded"] += amount
        self.created_refunds += 1
        return 200, {
            "id": f"re_{uuid.uuid4().hex[:24]}",
            "object": "refund",
            "amount": amount,
            "payment_intent": intent["id"],
            "status": "succeeded",
        }


class FakeStripeServer:
    """`with FakeStripeServer() as fake:` serves on a free 127.0.0.1 port; `fake.url` is the API base."""

    def __init__(self) -> None:
        self.state = FakeStripe()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                query = self.path.partition("?")[2]
                params = dict(parse_qsl(raw or query, keep_blank_values=True))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = state.handle(method, self.path.partition("?")[0], headers, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                self._answer("POST")

            def do_GET(self):  # noqa: N802
                self._answer("GET")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeStripeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
