"""Slack: post a rendered `{text, blocks}` message to an incoming-webhook URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ledgerflow.notifications.blocks import SlackWebhook
from ledgerflow.notifications.notifier import check_response, transport_error
from ledgerflow.notifications.signing import DELIVERY_HEADER

__all__ = ["SlackNotifier"]


class SlackNotifier:
    def __init__(self, block: SlackWebhook, client: httpx.AsyncClient) -> None:
        self._url = block.url.get_secret_value()
        self._client = client

    async def send(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"text": message["text"]}
        if message.get("blocks") is not None:
            payload["blocks"] = message["blocks"]
        try:
            response = await self._client.post(self._url, json=payload, headers={DELIVERY_HEADER: key})
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Slack webhook", self._url) from None
        return check_response(response, "Slack webhook")
