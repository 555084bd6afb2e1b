"""Outgoing email through a configured backend: `file` (.eml files), `smtp` (aiosmtplib), `console`."""

from __future__ import annotations

import asyncio
import sys
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Literal, Protocol

import aiosmtplib
import structlog
from pydantic_settings import BaseSettings, SettingsConfigDict

log = structlog.get_logger("shop.mail")


class MailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    mail_backend: Literal["file", "smtp", "console"] = "file"
    mail_dir: str = "var/mail"
    mail_from: str = "The Shop <no-reply@shop.example>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    # The web UI is served by the gateway itself (gateway/web/): its local address by default.
    frontend_url: str = "http://127.0.0.1:8000"


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


def build_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="shop.example")
    message.set_content(body)
    return message


class FileMailer:
    def __init__(self, directory: str, sender: str) -> None:
        self.directory = Path(directory)
        self.sender = sender

    async def send(self, to: str, subject: str, body: str) -> None:
        message = build_message(self.sender, to, subject, body)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{uuid.uuid4().hex}.eml"
        await asyncio.to_thread(path.write_bytes, bytes(message))
        log.info("mail.written", path=str(path), subject=subject)


class ConsoleMailer:
    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, to: str, subject: str, body: str) -> None:
        message = build_message(self.sender, to, subject, body)
        print(message.as_string(), file=sys.stderr, flush=True)


class SmtpMailer:
    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, body: str) -> None:
        s = self.settings
        await aiosmtplib.send(
            build_message(s.mail_from, to, subject, body),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_use_tls,
            timeout=15,
        )
        log.info("mail.sent", subject=subject)


def build_mailer(settings: MailSettings) -> Mailer:
    if settings.mail_backend == "smtp":
        return SmtpMailer(settings)
    if settings.mail_backend == "console":
        return ConsoleMailer(settings.mail_from)
    return FileMailer(settings.mail_dir, settings.mail_from)
