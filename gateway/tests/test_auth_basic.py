"""Register, login, refresh, logout and /auth/me through the real gateway."""

from __future__ import annotations

import uuid


async def test_register_login_me_refresh_logout(suite):
    http = suite.http
    user = await suite.register(email=f"  Mixed-{uuid.uuid4().hex[:8]}@Example.COM ")
    assert user["user"]["email"] == user["email"].strip().lower()
    assert user["user"]["role"] == "CUSTOMER"
    me = await http.get("/api/v1/auth/me", headers=user["headers"])
    assert me.status_code == 200, me.text
    login = await http.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 200, login.text
    tokens = login.json()["data"]["tokens"]
    refreshed = await http.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()["data"]["tokens"]
    headers = {"Authorization": f"Bearer {new['accessToken']}"}
    out = await http.post("/api/v1/auth/logout", headers=headers)
    assert out.status_code == 204, out.text
    assert (await http.get("/api/v1/auth/me", headers=headers)).status_code == 401
