"""One router module per domain; `all_routers` finds every module here that defines `router`.

FastAPI matches a request against the routes one by one, in the order they were included, so the
busiest routers come first (probes, then browsing, then the cart); the rest follow by name. Paths
never overlap across routers, so the order changes only the cost of matching."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter

BUSIEST_FIRST = ("system", "catalog", "cart")


def all_routers() -> list[APIRouter]:
    routers = []
    names = [m.name for m in pkgutil.iter_modules(__path__)]
    for name in sorted(names, key=lambda n: (BUSIEST_FIRST.index(n) if n in BUSIEST_FIRST else len(BUSIEST_FIRST), n)):
        module = importlib.import_module(f"{__name__}.{name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return routers
