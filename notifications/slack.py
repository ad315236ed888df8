"""Slack: post a rendered `{text, blocks}` message to an incoming-webhook URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from ledgerflow.notifications.blocks import SlackWebhook
from ledgerflow.notifications.notifier import request
from ledgerflow.notifications.signing import DELIVERY_HEADER

__all__ = ["SlackNotifier"]

_TIMEOUT = 10.0


class SlackNotifier:
    def __init__(self, block: SlackWebhook, session: aiohttp.ClientSession) -> None:
        self._url = block.url.get_secret_value()
        self._session = session

    async def send(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"text": message["text"]}
        if message.get("blocks") is not None:
            payload["blocks"] = message["blocks"]
        headers = {"content-type": "application/json", DELIVERY_HEADER: key}
        return await request(self._session, "POST", self._url, what="Slack webhook", body=orjson.dumps(payload),
                             headers=headers, timeout=_TIMEOUT)
