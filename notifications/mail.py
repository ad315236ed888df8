"""Email over SMTP: plain text, and an HTML alternative when the rule gives one.

`smtplib` is blocking, so each message is sent on a worker thread. The `Message-ID` derives
from the delivery's idempotency key, so a mail system (or a person) can spot a retry.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from ledgerflow.notifications.blocks import SmtpServer
from ledgerflow.notifications.errors import DeliveryError

__all__ = ["EmailNotifier", "build_message", "send_email"]


class EmailNotifier:
    def __init__(self, block: SmtpServer) -> None:
        self._block = block

    async def send(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        return await asyncio.to_thread(send_email, self._block, message, key)


def build_message(sender: str, message: Mapping[str, Any], key: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(message["to"])
    if message.get("cc"):
        mail["Cc"] = ", ".join(message["cc"])
    mail["Subject"] = message.get("subject", "")
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = f"<{key}@ledgerflow>"
    mail.set_content(message.get("body") or "")
    if message.get("html"):
        mail.add_alternative(message["html"], subtype="html")
    return mail


def send_email(block: SmtpServer, message: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Send one message now; DeliveryError (retryable for 4xx replies and connection trouble)."""
    mail = build_message(block.sender, message, key)
    recipients = list(message["to"]) + list(message.get("cc") or [])
    host, port = block.host, block.port or 25
    try:
        context = ssl.create_default_context(cafile=block.ca_file) if block.security != "none" else None
        if block.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=block.timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=block.timeout)
        with smtp:
            if block.security == "starttls":
                smtp.starttls(context=context)
            if block.username and block.password is not None:
                smtp.login(block.username, block.password.get_secret_value())
            refused = smtp.send_message(mail, from_addr=block.sender, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}", retryable=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"SMTP server refused every recipient: {', '.join(exc.recipients)}", retryable=False) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"SMTP server does not support it: {exc}", retryable=False) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP server answered {exc.smtp_code} {_text(exc.smtp_error)}",
                            retryable=400 <= exc.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP server {host}:{port} unreachable: {type(exc).__name__}: {exc}") from None
    return {"recipients": len(recipients) - len(refused), "refused": sorted(refused)}


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
