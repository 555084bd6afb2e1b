"""/api/v1/users/*: profile, account deletion, addresses (and GetAddress for checkout) and admin
user management, through the real gateway against PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from services.auth.tests.helpers import bearer, wait_until
from shop.auth.v1 import auth_pb2

ME = "/api/v1/users/me"
ADDRESSES = "/api/v1/users/me/addresses"


def address(**overrides):
    return {
        "label": "Home",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "line1": "1 Main St",
        "city": "Berlin",
        "postalCode": "10115",
        "country": "DE",
        **overrides,
    }


def user_row(suite, user_id: str) -> tuple:
    return suite.sql("auth", "SELECT first_name, last_name, phone, status FROM users WHERE id = %s", (user_id,))[0]


def address_rows(suite, user_id: str) -> list[tuple]:
    return suite.sql(
        "auth",
        "SELECT id, is_default, label, country FROM addresses WHERE user_id = %s ORDER BY created_at, id",
        (user_id,),
    )


# -- profile ----------------------------------------------------------------------------------------


async def test_get_and_patch_profile(suite):
    user = await suite.register()
    response = await suite.http.get(ME, headers=user["headers"])
    assert response.status_code == 200 and response.json()["data"] == user["user"]
    patched = await suite.http.patch(
        ME, json={"firstName": " Grace ", "phone": "+49 30 1234567"}, headers=user["headers"]
    )
    assert patched.status_code == 200, patched.text
    data = patched.json()["data"]
    assert (data["firstName"], data["lastName"], data["phone"]) == ("Grace", "User", "+49 30 1234567")
    assert user_row(suite, user["user"]["id"])[:3] == ("Grace", "User", "+49 30 1234567")
    cleared = await suite.http.patch(ME, json={"phone": None}, headers=user["headers"])
    assert cleared.status_code == 200 and cleared.json()["data"]["phone"] is None
    unchanged = await suite.http.patch(ME, json={}, headers=user["headers"])
    assert unchanged.status_code == 200 and unchanged.json()["data"]["firstName"] == "Grace"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"firstName": ""}, "firstName"),
        ({"lastName": "x" * 51}, "lastName"),
        ({"lastName": " " + "x" * 50}, "lastName"),  # maxLength counts what is sent, spaces too
        ({"firstName": None}, "firstName"),
        ({"phone": "call me maybe"}, "phone"),
        ({"phone": "030 1234567"}, "phone"),  # a profile phone has no country: international form only
        ({"email": "new@example.com"}, "email"),
        ({"role": "ADMIN"}, "role"),
        ({"firstName": 5}, "firstName"),
    ],
)
async def test_profile_bad_inputs_change_nothing(suite, payload, field):
    user = await suite.register()
    before = user_row(suite, user["user"]["id"])
    response = await suite.http.patch(ME, json=payload, headers=user["headers"])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["details"]["fields"]
    assert user_row(suite, user["user"]["id"]) == before
    assert suite.sql("auth", "SELECT role FROM users WHERE id = %s", (user["user"]["id"],))[0][0] == "CUSTOMER"


async def test_profile_needs_a_token(suite):
    for method in ("GET", "PATCH", "DELETE"):
        response = await suite.http.request(method, ME, json={} if method != "GET" else None)
        assert response.status_code == 401


async def test_delete_account_needs_the_password_then_deactivates(suite):
    user = await suite.register()
    wrong = await suite.http.request("DELETE", ME, json={"password": "Wr0ngPassword"}, headers=user["headers"])
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "INVALID_PASSWORD"
    missing = await suite.http.request("DELETE", ME, headers=user["headers"])
    assert missing.status_code == 400
    assert user_row(suite, user["user"]["id"])[3] == "ACTIVE"
    response = await suite.http.request("DELETE", ME, json={"password": user["password"]}, headers=user["headers"])
    assert response.status_code == 204, response.text
    assert user_row(suite, user["user"]["id"])[3] == "DEACTIVATED"
    assert (
        suite.sql(
            "auth", "SELECT count(*) FROM sessions WHERE user_id = %s AND revoked_at IS NULL", (user["user"]["id"],)
        )[0][0]
        == 0
    )
    assert (await suite.http.get(ME, headers=user["headers"])).status_code == 401
    login = await suite.http.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 401 and login.json()["error"]["code"] == "INVALID_CREDENTIALS"
    refresh = await suite.http.post("/api/v1/auth/refresh", json={"refreshToken": user["tokens"]["refreshToken"]})
    assert refresh.status_code == 401


# -- addresses --------------------------------------------------------------------------------------


async def test_address_crud_keeps_exactly_one_default(suite):
    user = await suite.register()
    uid = user["user"]["id"]
    first = await suite.http.post(ADDRESSES, json=address(label="Home", country="de"), headers=user["headers"])
    assert first.status_code == 201, first.text
    home = first.json()["data"]
    assert home["isDefault"] is True and home["country"] == "DE"
    assert set(home) == {
        "id",
        "label",
        "firstName",
        "lastName",
        "line1",
        "line2",
        "city",
        "state",
        "postalCode",
        "country",
        "phone",
        "isDefault",
    }
    office = (
        await suite.http.post(ADDRESSES, json=address(label="Office", line2="Floor 3"), headers=user["headers"])
    ).json()["data"]
    assert office["isDefault"] is False and office["line2"] == "Floor 3"
    cabin = (
        await suite.http.post(
            ADDRESSES, json=address(label="Cabin", isDefault=True, country="NO"), headers=user["headers"]
        )
    ).json()["data"]
    assert cabin["isDefault"] is True
    assert [r[1] for r in address_rows(suite, uid)] == [False, False, True]
    listed = await suite.http.get(ADDRESSES, headers=user["headers"])
    assert listed.status_code == 200
    assert [a["label"] for a in listed.json()["data"]] == ["Home", "Office", "Cabin"]
    assert listed.json()["page"]["totalSize"] == 3
    # PATCH: make Office the default, change its city, clear line2
    patched = await suite.http.patch(
        f"{ADDRESSES}/{office['id']}",
        json={"isDefault": True, "city": "Hamburg", "line2": None},
        headers=user["headers"],
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["data"]["city"], patched.json()["data"]["line2"]) == ("Hamburg", None)
    assert [r[1] for r in address_rows(suite, uid)] == [False, True, False]
    # deleting the default makes another one the default
    deleted = await suite.http.delete(f"{ADDRESSES}/{office['id']}", headers=user["headers"])
    assert deleted.status_code == 204
    rows = address_rows(suite, uid)
    assert len(rows) == 2 and sum(1 for r in rows if r[1]) == 1
    # deleting a non-default keeps the default
    other = next(r for r in rows if not r[1])
    assert (await suite.http.delete(f"{ADDRESSES}/{other[0]}", headers=user["headers"])).status_code == 204
    assert [r[1] for r in address_rows(suite, uid)] == [True]


async def test_an_address_phone_is_checked_against_its_country(suite):
    user = await suite.register()
    home = await suite.http.post(ADDRESSES, json=address(phone="030 12345"), headers=user["headers"])
    assert home.status_code == 201, home.text
    url = f"{ADDRESSES}/{home.json()['data']['id']}"
    # a phone alone is checked against the stored country (DE); with a country, against that one
    assert (await suite.http.patch(url, json={"phone": "030 54321"}, headers=user["headers"])).status_code == 200
    refused = await suite.http.patch(url, json={"country": "US", "phone": "030 54321"}, headers=user["headers"])
    assert refused.status_code == 400 and set(refused.json()["error"]["details"]["fields"]) == {"phone"}
    refused = await suite.http.post(ADDRESSES, json=address(country="US", phone="030 12345"), headers=user["headers"])
    assert refused.status_code == 400 and set(refused.json()["error"]["details"]["fields"]) == {"phone"}


async def test_unsetting_the_default_directly_is_refused(suite):
    user = await suite.register()
    home = (await suite.http.post(ADDRESSES, json=address(), headers=user["headers"])).json()["data"]
    response = await suite.http.patch(f"{ADDRESSES}/{home['id']}", json={"isDefault": False}, headers=user["headers"])
    assert response.status_code == 400 and "isDefault" in response.json()["error"]["details"]["fields"]
    assert address_rows(suite, user["user"]["id"])[0][1] is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"country": "XX"}, "country"),
        ({"country": "Germany"}, "country"),
        ({"country": ""}, "country"),
        ({"postalCode": ""}, "postalCode"),
        ({"postalCode": "<script>"}, "postalCode"),
        ({"postalCode": " 00".ljust(41)}, "postalCode"),  # 2 once trimmed, 41 as sent: maxLength is 40
        ({"label": ""}, "label"),
        ({"line1": "x" * 201}, "line1"),
        ({"city": "   "}, "city"),
        ({"phone": "nope"}, "phone"),
        ({"isDefault": "yes"}, "isDefault"),
        ({"userId": str(uuid.uuid4())}, "userId"),
    ],
)
async def test_address_bad_inputs_create_nothing(suite, overrides, field):
    user = await suite.register()
    response = await suite.http.post(ADDRESSES, json=address(**overrides), headers=user["headers"])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in response.json()["error"]["details"]["fields"]
    assert address_rows(suite, user["user"]["id"]) == []


async def test_address_missing_fields(suite):
    user = await suite.register()
    response = await suite.http.post(ADDRESSES, json={"label": "Home"}, headers=user["headers"])
    assert response.status_code == 400
    assert {"firstName", "lastName", "line1", "city", "postalCode", "country"} <= set(
        response.json()["error"]["details"]["fields"]
    )
    assert address_rows(suite, user["user"]["id"]) == []


async def test_patch_address_bad_inputs_change_nothing(suite):
    user = await suite.register()
    home = (await suite.http.post(ADDRESSES, json=address(), headers=user["headers"])).json()["data"]
    before = address_rows(suite, user["user"]["id"])
    for payload in ({"country": "ZZ"}, {"label": None}, {"postalCode": ""}, {"nope": 1}):
        response = await suite.http.patch(f"{ADDRESSES}/{home['id']}", json=payload, headers=user["headers"])
        assert response.status_code == 400, (payload, response.text)
    assert address_rows(suite, user["user"]["id"]) == before


async def test_another_users_address_is_404(suite):
    owner = await suite.register()
    intruder = await suite.register()
    home = (await suite.http.post(ADDRESSES, json=address(), headers=owner["headers"])).json()["data"]
    before = address_rows(suite, owner["user"]["id"])
    patch = await suite.http.patch(f"{ADDRESSES}/{home['id']}", json={"city": "Paris"}, headers=intruder["headers"])
    assert patch.status_code == 404 and patch.json()["error"]["code"] == "ADDRESS_NOT_FOUND"
    delete = await suite.http.delete(f"{ADDRESSES}/{home['id']}", headers=intruder["headers"])
    assert delete.status_code == 404
    assert (await suite.http.get(ADDRESSES, headers=intruder["headers"])).json()["data"] == []
    assert address_rows(suite, owner["user"]["id"]) == before
    missing = await suite.http.delete(f"{ADDRESSES}/{uuid.uuid4()}", headers=owner["headers"])
    assert missing.status_code == 404


async def test_concurrent_first_addresses_leave_one_default(suite):
    user = await suite.register()
    responses = await asyncio.gather(
        *(suite.http.post(ADDRESSES, json=address(label=f"A{i}"), headers=user["headers"]) for i in range(6))
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    rows = address_rows(suite, user["user"]["id"])
    assert len(rows) == 6 and sum(1 for r in rows if r[1]) == 1


async def test_address_limit(suite):
    user = await suite.register()
    for i in range(20):
        assert (
            await suite.http.post(ADDRESSES, json=address(label=f"A{i}"), headers=user["headers"])
        ).status_code == 201
    response = await suite.http.post(ADDRESSES, json=address(label="One too many"), headers=user["headers"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "ADDRESS_LIMIT_REACHED"
    assert len(address_rows(suite, user["user"]["id"])) == 20


async def test_get_address_is_for_services_only(suite):
    owner = await suite.register()
    home = (await suite.http.post(ADDRESSES, json=address(), headers=owner["headers"])).json()["data"]
    stub = suite.stub("auth")
    response = await stub.GetAddress(auth_pb2.GetAddressRequest(user_id=owner["user"]["id"], address_id=home["id"]))
    assert response.address.id == home["id"] and response.address.country == "DE"
    other = await suite.register()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetAddress(auth_pb2.GetAddressRequest(user_id=other["user"]["id"], address_id=home["id"]))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # a user token without a service identity is refused
    from grpc import aio

    async with aio.insecure_channel(suite.servers["auth"].address) as channel:
        raw = auth_pb2_grpc_stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await raw.GetAddress(
                auth_pb2.GetAddressRequest(user_id=owner["user"]["id"], address_id=home["id"]),
                metadata=[("authorization", f"Bearer {owner['tokens']['accessToken']}")],
            )
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def auth_pb2_grpc_stub(channel):
    from shop.auth.v1 import auth_pb2_grpc

    return auth_pb2_grpc.AuthServiceStub(channel)


# -- admin ------------------------------------------------------------------------------------------


async def test_admin_routes_need_the_admin_role(suite):
    customer = await suite.register()
    seller = await suite.user_with_role("SELLER")
    for principal in (customer, seller):
        for method, path, body in (
            ("GET", "/api/v1/users", None),
            ("GET", f"/api/v1/users/{customer['user']['id']}", None),
            ("PATCH", f"/api/v1/users/{customer['user']['id']}", {"role": "ADMIN"}),
        ):
            response = await suite.http.request(method, path, json=body, headers=principal["headers"])
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "FORBIDDEN"
    assert (await suite.http.get("/api/v1/users")).status_code == 401
    assert suite.sql("auth", "SELECT role FROM users WHERE id = %s", (customer["user"]["id"],))[0][0] == "CUSTOMER"


async def test_admin_lists_users_with_filters_and_keyset_pages(suite):
    admin = await suite.admin()
    tag = uuid.uuid4().hex[:8]
    created = [await suite.register(email=f"list-{tag}-{i}@example.com") for i in range(5)]
    await suite.http.patch(
        f"/api/v1/users/{created[0]['user']['id']}", json={"role": "SELLER"}, headers=admin["headers"]
    )
    await suite.http.patch(
        f"/api/v1/users/{created[1]['user']['id']}", json={"status": "SUSPENDED"}, headers=admin["headers"]
    )
    seen: list[str] = []
    token, pages = None, 0
    while True:
        params = {"q": f"LIST-{tag}", "pageSize": 2}
        if token:
            params["pageToken"] = token
        response = await suite.http.get("/api/v1/users", params=params, headers=admin["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["page"]["totalSize"] == 5
        seen.extend(u["id"] for u in body["data"])
        pages += 1
        token = body["page"]["nextPageToken"]
        if not token:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == {u["user"]["id"] for u in created}
    assert seen == [u["user"]["id"] for u in reversed(created)]  # newest first, stable
    sellers = await suite.http.get("/api/v1/users", params={"q": tag, "role": "SELLER"}, headers=admin["headers"])
    assert [u["id"] for u in sellers.json()["data"]] == [created[0]["user"]["id"]]
    suspended = await suite.http.get(
        "/api/v1/users", params={"q": tag, "status": "SUSPENDED"}, headers=admin["headers"]
    )
    assert [u["id"] for u in suspended.json()["data"]] == [created[1]["user"]["id"]]
    # Wildcards are literal: as a LIKE pattern this would match all five (other tests, the contract
    # fuzzer among them, register users whose emails hold a bare "%").
    by_name = await suite.http.get("/api/v1/users", params={"q": f"list-{tag}-%"}, headers=admin["headers"])
    assert by_name.status_code == 200 and by_name.json()["data"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": 0},
        {"pageSize": 101},
        {"pageToken": "forged"},
        {"role": "ROOT"},
        {"status": "BANNED"},
        {"q": "x" * 101},
    ],
)
async def test_admin_list_bad_queries(suite, params):
    admin = await suite.admin()
    response = await suite.http.get("/api/v1/users", params=params, headers=admin["headers"])
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("VALIDATION_ERROR", "INVALID_PAGE_TOKEN")


async def test_page_token_of_another_query_is_refused(suite):
    admin = await suite.admin()
    await suite.register()
    await suite.register()
    first = await suite.http.get("/api/v1/users", params={"pageSize": 1}, headers=admin["headers"])
    token = first.json()["page"]["nextPageToken"]
    assert token
    response = await suite.http.get(
        "/api/v1/users", params={"pageSize": 1, "pageToken": token, "role": "ADMIN"}, headers=admin["headers"]
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_PAGE_TOKEN"


async def test_admin_get_and_patch_user(suite):
    admin = await suite.admin()
    user = await suite.register()
    path = f"/api/v1/users/{user['user']['id']}"
    response = await suite.http.get(path, headers=admin["headers"])
    assert response.status_code == 200 and response.json()["data"]["email"] == user["email"]
    missing = await suite.http.get(f"/api/v1/users/{uuid.uuid4()}", headers=admin["headers"])
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "USER_NOT_FOUND"
    for body in ({}, {"role": "ROOT"}, {"status": "BANNED"}, {"role": None, "status": None}, {"email": "x@y.z"}):
        bad = await suite.http.patch(path, json=body, headers=admin["headers"])
        assert bad.status_code == 400, (body, bad.text)
    # null is not "left out": neither field can be cleared, and the other field is not applied either
    nulls: tuple[tuple[dict[str, str | None], str], ...] = (
        ({"role": "SELLER", "status": None}, "status"),
        ({"role": None, "status": "SUSPENDED"}, "role"),
    )
    for null_body, field in nulls:
        bad = await suite.http.patch(path, json=null_body, headers=admin["headers"])
        assert bad.status_code == 400, (null_body, bad.text)
        error = bad.json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["details"]["fields"] == {field: ["must not be null"]}
    assert suite.sql("auth", "SELECT role, status FROM users WHERE id = %s", (user["user"]["id"],)) == [
        ("CUSTOMER", "ACTIVE")
    ]
    promoted = await suite.http.patch(path, json={"role": "SELLER"}, headers=admin["headers"])
    assert promoted.status_code == 200 and promoted.json()["data"]["role"] == "SELLER"
    # a role change ends the sessions: no token keeps the old role
    assert (await suite.http.get("/api/v1/auth/me", headers=user["headers"])).status_code == 401
    login = await suite.http.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert login.json()["data"]["user"]["role"] == "SELLER"
    unknown = await suite.http.patch(f"/api/v1/users/{uuid.uuid4()}", json={"role": "SELLER"}, headers=admin["headers"])
    assert unknown.status_code == 404


async def test_admin_cannot_demote_or_suspend_themselves(suite):
    admin = await suite.admin()
    path = f"/api/v1/users/{admin['user']['id']}"
    for body in ({"role": "CUSTOMER"}, {"status": "SUSPENDED"}):
        response = await suite.http.patch(path, json=body, headers=admin["headers"])
        assert response.status_code == 409 and response.json()["error"]["code"] == "CANNOT_CHANGE_SELF"
    assert suite.sql("auth", "SELECT role, status FROM users WHERE id = %s", (admin["user"]["id"],)) == [
        ("ADMIN", "ACTIVE")
    ]


async def test_suspension_refuses_issued_tokens_within_5_seconds_everywhere(suite):
    admin = await suite.admin()
    user = await suite.register()
    headers = user["headers"]
    metadata = [("authorization", f"Bearer {user['tokens']['accessToken']}")]
    from shop.catalog.v1 import catalog_pb2

    assert (await suite.http.get("/api/v1/wishlist", headers=headers)).status_code == 200
    await suite.stub("catalog").ListWishlistItems(catalog_pb2.ListWishlistItemsRequest(), metadata=metadata)
    response = await suite.http.patch(
        f"/api/v1/users/{user['user']['id']}", json={"status": "SUSPENDED"}, headers=admin["headers"]
    )
    assert response.status_code == 200 and response.json()["data"]["status"] == "SUSPENDED"
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def gateway_refuses():
        return (await suite.http.get("/api/v1/wishlist", headers=headers)).status_code == 401

    async def catalog_refuses():
        try:
            await suite.stub("catalog").ListWishlistItems(catalog_pb2.ListWishlistItemsRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    assert await wait_until(gateway_refuses, timeout=5.0)
    assert await wait_until(catalog_refuses, timeout=max(0.1, 5.0 - (loop.time() - started)))
    # the auth service itself refuses at once (it asks its database)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await suite.stub("auth").GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    refresh = await suite.http.post("/api/v1/auth/refresh", json={"refreshToken": user["tokens"]["refreshToken"]})
    assert refresh.status_code == 401
    # reactivating lets the user log in again (old tokens stay dead)
    await suite.http.patch(f"/api/v1/users/{user['user']['id']}", json={"status": "ACTIVE"}, headers=admin["headers"])
    login = await suite.http.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 200
    assert (await suite.http.get("/api/v1/auth/me", headers=bearer(user["tokens"]["accessToken"]))).status_code == 401
