"""Helpers shared by the auth tests (service-level and gateway-level)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pyotp


def new_email() -> str:
    return f"auth-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_mails(mail_dir: Path) -> list[EmailMessage]:
    messages = []
    for path in sorted(mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime):
        messages.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return messages


async def wait_for_mails(
    mail_dir: Path, to: str, subject: str, count: int = 1, timeout: float = 10.0
) -> list[EmailMessage]:
    """The messages to `to` with `subject`, once at least `count` exist (mail is sent in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in read_mails(mail_dir) if m["To"] == to and m["Subject"] == subject]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def link_token(message: EmailMessage, path: str) -> str:
    body = message.get_content()
    match = re.search(re.escape(path) + r"\?token=([A-Za-z0-9_\-]+)", body)
    assert match, body
    return match.group(1)


def totp_code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Polls an async predicate until it returns something truthy; returns it (or the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
