"""Generic webhooks: the rendered body sent to the block's URL, signed (notifications/signing.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict

from ledgerflow.notifications.blocks import Webhook
from ledgerflow.notifications.notifier import request
from ledgerflow.notifications.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["WebhookNotifier"]


class WebhookNotifier:
    def __init__(self, block: Webhook, session: aiohttp.ClientSession) -> None:
        self._block = block
        self._url = block.url.get_secret_value()
        self._session = session

    async def send(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        body = str(message.get("body", "")).encode()
        timestamp = int(time.time())
        headers: CIMultiDict[str] = CIMultiDict({"content-type": "application/json", "user-agent": "ledgerflow"})
        headers.update({name: value.get_secret_value() for name, value in self._block.headers.items()})
        headers.update(message.get("headers") or {})
        # Ours last: neither the block nor the rule can forge the signature or the key.
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(self._block.secret.get_secret_value(), timestamp, body)
        headers[DELIVERY_HEADER] = key
        method = message.get("method") or self._block.method
        return await request(self._session, method, self._url, what="webhook", body=body, headers=headers,
                             timeout=self._block.timeout)
