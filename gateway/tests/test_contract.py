"""The contract as generators consume it (API.md Conventions, issue 13): the OpenAPI document's
operation ids, security, statuses and required headers; the one Address shape; ETag / If-Match on
products; 405 with Allow."""

from __future__ import annotations

import json
import re

from shop.lib.idempotency import MAX_KEY_LENGTH
from tests.invariants.orders_helpers import ADDRESS, add_to_cart, checkout, make_product

API = "/api/v1"


async def spec(http) -> dict:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


# -- the document ---------------------------------------------------------------------------------


async def test_every_operation_has_an_id_a_typed_success_and_the_error_envelope(http):
    document = await spec(http)
    ids = []
    for path, operations in document["paths"].items():
        assert not re.search(r"\{[a-z]+_[a-z_]+\}", path), f"snake_case path parameter in {path}"
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert re.fullmatch(r"[a-z]+-[a-z0-9-]+", operation["operationId"]), operation["operationId"]
            assert operation["operationId"].split("-")[0] in operation["tags"], operation["operationId"]
            success = {status: answer for status, answer in operation["responses"].items() if status[0] == "2"}
            assert len(success) == 1, (method, path)
            status, answer = next(iter(success.items()))
            if status in ("202", "204"):
                assert "content" not in answer, (method, path)
            else:
                content = answer["content"]
                schema = next(iter(content.values())).get("schema")
                assert schema, (method, path, "untyped success body")
            for status, answer in operation["responses"].items():
                if status[0] in "45" and "readyz" not in path:
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorEnvelope", (method, path, status)
            if path.startswith(API):
                assert {"429", "500", "503"} <= set(operation["responses"]), (method, path)
    assert len(ids) == len(set(ids))
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ErrorOut" not in schemas and "ErrorBody" in schemas


async def test_security_and_required_headers_are_declared(http):
    document = await spec(http)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    paths = document["paths"]
    assert paths[f"{API}/auth/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "401" in paths[f"{API}/auth/me"]["get"]["responses"]
    assert paths[f"{API}/products/{{productId}}"]["get"]["security"] == [{}, {"bearerAuth": []}]
    assert "security" not in paths[f"{API}/products"]["get"]
    assert paths[f"{API}/orders/{{orderId}}/refunds"]["post"]["security"] == [{"bearerAuth": []}]
    for path in (f"{API}/orders", f"{API}/orders/{{orderId}}/refunds"):
        key = next(p for p in paths[path]["post"]["parameters"] if p["name"] == "Idempotency-Key")
        assert key["required"] is True and key["in"] == "header"
    forgot = paths[f"{API}/auth/password/forgot"]["post"]["responses"]["202"]
    assert "content" not in forgot
    # Every operation taking an Idempotency-Key documents the 422 it answers when the key comes back
    # with another body (the fuzzer found it undocumented: FastAPI's own 422 was dropped with it).
    keyed = [
        (path, method, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    ]
    assert len(keyed) == 5, [(path, method) for path, method, _ in keyed]
    for path, method, operation in keyed:
        reused = operation["responses"].get("422", {})
        assert "IDEMPOTENCY_KEY_REUSED" in reused.get("description", ""), (path, method)
        assert reused["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope"), (path, method)
    assert "HTTPValidationError" not in json.dumps(document)


async def test_parameters_are_sent_or_left_out_never_null_and_ids_are_exactly_uuids(http):
    """A query or header value is text: an optional parameter is documented as its type, not
    `anyOf [type, null]` (a generator would send the text "null" as a session id). A UUID is
    36 characters, since a pattern's `$` lets a final newline through in Python's regex dialect."""
    paths = (await spec(http))["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                assert "null" not in str(parameter["schema"]), (method, path, parameter)
    session = next(p for p in paths[f"{API}/cart"]["get"]["parameters"] if p["name"] == "X-Session-ID")
    product = next(p for p in paths[f"{API}/products/{{productId}}"]["patch"]["parameters"] if p["in"] == "path")
    for schema in (session["schema"], product["schema"]):
        assert (schema["type"], schema["format"], schema["minLength"], schema["maxLength"]) == (
            "string",
            "uuid",
            36,
            36,
        )
    # One Idempotency-Key rule (shop.lib.idempotency) wherever the header is taken.
    for path in (f"{API}/products", f"{API}/products/{{productId}}/stock-adjustments", f"{API}/cart/items"):
        key = next(p for p in paths[path]["post"]["parameters"] if p["name"] == "Idempotency-Key")
        assert key["schema"]["maxLength"] == MAX_KEY_LENGTH, path


async def test_an_integral_json_number_is_an_integer(suite):
    """JSON Schema's `integer` holds 1.0, so a body may write a whole number so; a fraction, a
    numeric string or a boolean is still 400 VALIDATION_ERROR and changes nothing."""
    boss = await suite.admin()
    url = f"{API}/products/{await make_product(suite, price=1500, stock=5)}"
    adjusted = await suite.http.post(
        f"{url}/stock-adjustments", json={"delta": 2.0, "reason": "recount"}, headers=boss["headers"]
    )
    assert adjusted.status_code == 200 and adjusted.json()["data"] == {"stock": 7}, adjusted.text
    customer = await suite.register()
    for rating in (4.5, "4", True, 1e300):
        refused = await suite.http.post(f"{url}/reviews", json={"rating": rating}, headers=customer["headers"])
        assert refused.status_code == 400, (rating, refused.text)
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
        assert "rating" in refused.json()["error"]["details"]["fields"]
    assert (await suite.http.get(url)).json()["data"]["rating"] == {"average": 0.0, "count": 0}
    review = await suite.http.post(f"{url}/reviews", json={"rating": 4.0}, headers=customer["headers"])
    assert review.status_code == 201 and review.json()["data"]["rating"] == 4, review.text


async def test_text_never_holds_nul_a_400_that_changes_nothing(suite):
    """Every body refuses NUL in its text, as documented (PostgreSQL text cannot hold it: a cancel
    or refund reason with NUL was a 500)."""
    boss = await suite.admin()
    user = await suite.register()
    await add_to_cart(suite, user, await make_product(suite, price=1500, stock=5))
    order = (await checkout(suite, user)).json()["data"]
    url = f"{API}/orders/{order['id']}"
    attempts = (
        await suite.http.post(f"{url}/cancel", json={"reason": "a\x00"}, headers=user["headers"]),
        await suite.http.post(
            f"{url}/refunds",
            json={"amountCents": 100, "reason": "a\x00"},
            headers={**boss["headers"], "Idempotency-Key": "nul-refund"},
        ),
        await suite.http.patch(
            f"{url}/status", json={"status": "PROCESSING", "carrier": "\x00"}, headers=boss["headers"]
        ),
    )
    for response, field in zip(attempts, ("reason", "reason", "carrier"), strict=True):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"]["fields"] == {
            field: ["Value error, must not contain NUL characters"]
        }
    after = (await suite.http.get(url, headers=user["headers"])).json()["data"]
    assert after["status"] == "PAID" and after["status"] == order["status"]
    payments = (await suite.http.get(f"{url}/payments", headers=user["headers"])).json()["data"]
    assert payments["refunds"] == []
    reason = (await spec(suite.http))["components"]["schemas"]["CancelBody"]["properties"]["reason"]
    assert {"type": "string", "maxLength": 300, "pattern": "^[^\\x00]*$"} in reason["anyOf"]


async def test_405_names_every_method_of_the_path_in_allow(http):
    response = await http.put(f"{API}/products")
    assert response.status_code == 405 and response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["allow"] == "GET, POST"
    response = await http.post(f"{API}/products/00000000-0000-0000-0000-000000000000")
    assert response.headers["allow"] == "GET, PATCH, DELETE"


# -- one Address shape ----------------------------------------------------------------------------


async def test_a_saved_address_as_returned_is_a_shipping_address(suite):
    user = await suite.register()
    saved = await suite.http.post(
        f"{API}/users/me/addresses",
        json={**ADDRESS, "label": "Home", "phone": "+44 20 7946 0958"},
        headers=user["headers"],
    )
    assert saved.status_code == 201, saved.text
    address = saved.json()["data"]
    assert {"id", "label", "isDefault"} <= set(address)
    # Sent back exactly as returned (label, id, isDefault and nulls included), plus the read-only
    # times a later version may return.
    product = await make_product(suite, price=1000, stock=5)
    await add_to_cart(suite, user, product)
    body = {
        "shippingAddress": {**address, "createdAt": "2025-01-01T00:00:00Z", "updatedAt": None},
        "payment": {"method": "card", "token": "tok_visa"},
    }
    response = await checkout(suite, user, body=body)
    assert response.status_code == 201, response.text
    shipped = response.json()["data"]["shippingAddress"]
    assert (shipped["firstName"], shipped["postalCode"], shipped["phone"]) == ("Ada", "N1 1AA", "+44 20 7946 0958")
    # The address book takes it back as well (a copy: the id is ignored).
    again = await suite.http.post(f"{API}/users/me/addresses", json=address, headers=user["headers"])
    assert again.status_code == 201, again.text
    assert again.json()["data"]["id"] != address["id"]


async def test_an_unknown_address_field_is_still_refused(suite):
    user = await suite.register()
    product = await make_product(suite, price=1000, stock=5)
    await add_to_cart(suite, user, product)
    body = {"shippingAddress": {**ADDRESS, "nickname": "x"}, "payment": {"method": "card", "token": "tok_visa"}}
    response = await checkout(suite, user, body=body)
    assert response.status_code == 400, response.text
    assert "shippingAddress.nickname" in response.json()["error"]["details"]["fields"]


# -- ETag / If-Match on products ------------------------------------------------------------------


async def test_product_etag_and_if_match(suite):
    boss = await suite.admin()
    product_id = await make_product(suite, price=1500, stock=5)
    url = f"{API}/products/{product_id}"
    first = await suite.http.get(url)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"') and etag.endswith('"')
    assert (await suite.http.get(url)).headers["etag"] == etag  # unchanged: the same tag
    # A write with the current tag goes through and moves the version.
    updated = await suite.http.patch(url, json={"name": "Renamed"}, headers={**boss["headers"], "If-Match": etag})
    assert updated.status_code == 200, updated.text
    new_tag = updated.headers["etag"]
    assert new_tag != etag and (await suite.http.get(url)).headers["etag"] == new_tag
    # The stale tag: 412, nothing changed.
    stale = await suite.http.patch(url, json={"name": "Lost update"}, headers={**boss["headers"], "If-Match": etag})
    assert stale.status_code == 412, stale.text
    assert stale.json()["error"]["code"] == "PRECONDITION_FAILED"
    assert (await suite.http.get(url)).json()["data"]["name"] == "Renamed"
    # A stock adjustment is a change too; tags that are no version of ours, or weak, match nothing.
    adjusted = await suite.http.post(
        f"{url}/stock-adjustments", json={"delta": 1, "reason": "recount"}, headers=boss["headers"]
    )
    assert adjusted.status_code == 200, adjusted.text
    for tag in (new_tag, '"nope"', "W/" + (await suite.http.get(url)).headers["etag"], "garbage"):
        refused = await suite.http.patch(url, json={"name": "x"}, headers={**boss["headers"], "If-Match": tag})
        assert refused.status_code == 412, (tag, refused.text)
    # `*` and no If-Match are unconditional; 400, 404 and 403 come before the precondition, also
    # when the tag names no version at all.
    assert (
        await suite.http.patch(url, json={"name": "Star"}, headers={**boss["headers"], "If-Match": "*"})
    ).status_code == 200
    for tag in (new_tag, "garbage", ""):
        missing = await suite.http.patch(
            f"{API}/products/00000000-0000-4000-8000-000000000000",
            json={"name": "x"},
            headers={**boss["headers"], "If-Match": tag},
        )
        assert missing.status_code == 404, (tag, missing.text)
        malformed = await suite.http.patch(
            f"{API}/products/not-a-uuid", json={"name": "x"}, headers={**boss["headers"], "If-Match": tag}
        )
        assert malformed.status_code == 400, (tag, malformed.text)
        assert malformed.json()["error"]["details"]["fields"] == {"productId": ["must be a UUID"]}
    customer = await suite.register()
    current = (await suite.http.get(url)).headers["etag"]
    assert (
        await suite.http.patch(url, json={"name": "x"}, headers={**customer["headers"], "If-Match": current})
    ).status_code == 403


# -- the order event stream (sse-starlette): ids, retry, Last-Event-ID ------------------------------


async def frames(response, count: int) -> list[dict[str, str]]:
    """The first `count` events (not comments) of a stream, each as its fields."""
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if current:
                found.append(current)
                current = {}
                if len(found) == count:
                    return found
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        current[name] = value.removeprefix(" ")
    return found


async def test_order_events_carry_ids_and_retry_and_resume_after_last_event_id(suite):
    import json

    user = await suite.register()
    product = await make_product(suite, price=1000, stock=5)
    await add_to_cart(suite, user, product)
    order = (await checkout(suite, user)).json()["data"]
    url = f"{API}/orders/{order['id']}/events"
    assert [h["status"] for h in order["history"]] == ["PENDING", "PAID"]
    async with suite.http.stream("GET", url, headers=user["headers"]) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        (first,) = await frames(response, 1)
    assert (first["event"], first["id"], first["retry"]) == ("status", "2", "3000")
    assert json.loads(first["data"])["status"] == "PAID"
    assert json.loads(first["data"])["order"]["id"] == order["id"]
    # A reconnect after event 1 gets event 2 (what it missed); after event 0, both.
    async with suite.http.stream("GET", url, headers={**user["headers"], "Last-Event-ID": "1"}) as response:
        (missed,) = await frames(response, 1)
    assert (missed["id"], json.loads(missed["data"])["status"], missed["retry"]) == ("2", "PAID", "3000")
    async with suite.http.stream("GET", url, headers={**user["headers"], "Last-Event-ID": "0"}) as response:
        both = await frames(response, 2)
    assert [(f["id"], json.loads(f["data"])["status"]) for f in both] == [("1", "PENDING"), ("2", "PAID")]
    # The admin moves it on: the live event has the next id.
    boss = await suite.admin()
    async with suite.http.stream("GET", url, headers={**user["headers"], "Last-Event-ID": "2"}) as response:
        moved = await suite.http.patch(
            f"{API}/orders/{order['id']}/status", json={"status": "PROCESSING"}, headers=boss["headers"]
        )
        assert moved.status_code == 200, moved.text
        resumed, live = await frames(response, 2)
    assert resumed == {"retry": "3000"}  # nothing missed: only the reconnection delay
    assert (live["id"], json.loads(live["data"])["status"]) == ("3", "PROCESSING")


async def test_docs_work_without_internet(http):
    response = await http.get("/docs")
    assert response.status_code == 200 and "swagger-ui" in response.text
    assert not re.search(r"https?://", response.text), "the docs page names another origin"
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', response.text)
    assert len(assets) == 3
    for asset in assets:
        assert (await http.get(asset)).status_code == 200, asset
    assert '"validatorUrl": null' in response.text  # no badge fetched from the online validator
