"""In-process pub/sub of order changes (WatchOrder); other replicas' changes are seen by polling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class OrderEvents:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Event]] = {}

    def notify(self, order_id: str) -> None:
        for event in self._subscribers.get(order_id, ()):
            event.set()

    @contextlib.contextmanager
    def subscribe(self, order_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers.setdefault(order_id, set()).add(event)
        try:
            yield event
        finally:
            listeners = self._subscribers.get(order_id)
            if listeners is not None:
                listeners.discard(event)
                if not listeners:
                    self._subscribers.pop(order_id, None)
