"""schemathesis hooks for gateway/tests/test_schemathesis.py (loaded by the `st` process it starts).

Authentication: every test case gets a fresh access token (`FreshToken`), so one case's logout or
"revoke all sessions" never blinds the cases after it. A fresh token comes from rotating the
identity's refresh token (no bcrypt on the way); when a case ended the session, the identity logs
in again; when it can no longer log in (a case locked or suspended it), a new customer is
registered. Admin-only operations run as an admin, everything else as a customer.

Other tests share this database: the admin operations on users are pinned to one throwaway user
(`SHOP_CONTRACT_VICTIM_ID`), so a generated PATCH /users/{userId} cannot suspend or demote a user
another test relies on.

A category's parent must exist, a rule of the data and not of the shape: a well-formed `parentSlug`
becomes the slug of a category the test created (`SHOP_CONTRACT_PARENT_SLUG`), so that a body the
schema allows is not refused for naming a category nobody made; malformed ones are sent as they are.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

import requests
import schemathesis

BASE = os.environ["SHOP_CONTRACT_BASE_URL"]
VICTIM_ID = os.environ["SHOP_CONTRACT_VICTIM_ID"]
PARENT_SLUG = os.environ["SHOP_CONTRACT_PARENT_SLUG"]
PASSWORD = "Passw0rd!x"
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
ADMIN_OPERATIONS = {
    "catalog-create-product",
    "catalog-update-product",
    "catalog-archive-product",
    "catalog-adjust-stock",
    "catalog-create-category",
    "orders-update-status",
    "orders-refund",
    "users-list",
    "users-get",
    "users-update",
}


class Identity:
    """One account's session, refreshed for every case (one refresh at a time: two concurrent
    refreshes with one token would end the session, by design)."""

    def __init__(self, email: str, password: str, *, can_register: bool) -> None:
        self.email, self.password, self.can_register = email, password, can_register
        self.refresh_token: str | None = None
        self.lock = threading.Lock()

    def _take(self, response: requests.Response) -> str | None:
        if response.status_code not in (200, 201):
            return None
        tokens = response.json()["data"]["tokens"]
        self.refresh_token = tokens["refreshToken"]
        return tokens["accessToken"]

    def fresh_token(self) -> str:
        with self.lock:
            if self.refresh_token:
                token = self._take(
                    requests.post(f"{BASE}/api/v1/auth/refresh", json={"refreshToken": self.refresh_token}, timeout=30)
                )
                if token:
                    return token
            token = self._take(
                requests.post(
                    f"{BASE}/api/v1/auth/login", json={"email": self.email, "password": self.password}, timeout=30
                )
            )
            if token is None and self.can_register:
                self.email = f"contract-{uuid.uuid4().hex[:12]}@example.com"
                token = self._take(
                    requests.post(
                        f"{BASE}/api/v1/auth/register",
                        timeout=30,
                        json={
                            "email": self.email,
                            "password": self.password,
                            "firstName": "Contract",
                            "lastName": "Test",
                        },
                    )
                )
            if token is None:
                raise RuntimeError(f"no token for {self.email}")
            return token


ADMIN = Identity(os.environ["SHOP_CONTRACT_ADMIN_EMAIL"], PASSWORD, can_register=False)
CUSTOMER = Identity(os.environ["SHOP_CONTRACT_CUSTOMER_EMAIL"], PASSWORD, can_register=True)


def operation_id(case) -> str:
    return case.operation.definition.raw.get("operationId", "")


@schemathesis.auth(refresh_interval=None)
class FreshToken:
    def get(self, case, context):
        return (ADMIN if operation_id(case) in ADMIN_OPERATIONS else CUSTOMER).fresh_token()

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    """PATCH/GET /users/{userId}: a well-formed id becomes the throwaway user's."""
    if context.operation is not None and context.operation.path == "/api/v1/users/{userId}":
        value = path_parameters.get("userId")
        if isinstance(value, str) and UUID.match(value):
            path_parameters["userId"] = VICTIM_ID
    return path_parameters


@schemathesis.hook
def before_call(context, case, kwargs):
    """POST /categories: a well-formed parentSlug names the test's category (every phase calls here)."""
    if operation_id(case) == "catalog-create-category" and isinstance(case.body, dict):
        parent = case.body.get("parentSlug")
        if isinstance(parent, str) and len(parent) <= 64 and SLUG.fullmatch(parent):
            # (the test's category itself, whose slug schemathesis sees listed, is made a top one)
            case.body = {**case.body, "parentSlug": PARENT_SLUG if case.body.get("slug") != PARENT_SLUG else None}
