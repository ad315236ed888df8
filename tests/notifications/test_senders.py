"""The senders against real local receivers: what arrived, signatures verified, errors classified."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from ledgerflow.notifications.blocks import SlackWebhook, SmtpServer, Webhook
from ledgerflow.notifications.errors import DeliveryError
from ledgerflow.notifications.mail import EmailNotifier
from ledgerflow.notifications.notifier import environment_proxies
from ledgerflow.notifications.signing import verify
from ledgerflow.notifications.slack import SlackNotifier
from ledgerflow.notifications.webhook import WebhookNotifier
from tests.notifications.receivers import HttpReceiver, SmtpReceiver, self_signed, serving_http, serving_smtp

SECRET = "webhook-secret-123"


@pytest.fixture
def receiver() -> Iterator[tuple[HttpReceiver, str]]:
    app = HttpReceiver()
    with serving_http(app) as url:
        yield app, url


def _send(make: Any, message: dict[str, Any], key: str = "key-1") -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with aiohttp.ClientSession() as client:
            result: dict[str, Any] = await make(client).send(message, key)
            return result

    return asyncio.run(go())


def test_slack_posts_text_and_blocks(receiver: tuple[HttpReceiver, str]) -> None:
    app, url = receiver
    block = SlackWebhook.model_validate(dict(url=f"{url}/services/T0/B0/xyz"))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*etl* failed"}}]
    assert _send(lambda c: SlackNotifier(block, c), {"text": "etl failed", "blocks": blocks}) == {"status": 200}
    [got] = app.at("/services/T0/B0/xyz")
    assert got.method == "POST"
    assert orjson.loads(got.body) == {"text": "etl failed", "blocks": blocks}
    assert got.headers["x-ledgerflow-delivery"] == "key-1"


def test_webhook_is_signed_over_timestamp_and_body(receiver: tuple[HttpReceiver, str]) -> None:
    app, url = receiver
    block = Webhook.model_validate(dict(url=f"{url}/hook", secret=SECRET, headers={"Authorization": "Bearer abc"}))
    body = '{"run": "r-1"}'
    _send(lambda c: WebhookNotifier(block, c), {"body": body, "method": None, "headers": {"X-Extra": "1"}}, key="k-9")
    [got] = app.at("/hook")
    assert got.body == body.encode()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Bearer abc"
    assert got.headers["x-extra"] == "1"
    assert got.headers["x-ledgerflow-delivery"] == "k-9"
    timestamp, signature = got.headers["x-ledgerflow-timestamp"], got.headers["x-ledgerflow-signature"]
    assert signature.startswith("sha256=")
    assert verify(SECRET, timestamp, got.body, signature)
    assert not verify("another-secret", timestamp, got.body, signature)
    assert not verify(SECRET, timestamp, got.body + b" ", signature)
    assert not verify(SECRET, str(int(timestamp) - 1000), got.body, signature)


@pytest.fixture
def proxy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean slate of *_PROXY variables, read anew by the senders."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    environment_proxies.cache_clear()
    yield monkeypatch
    environment_proxies.cache_clear()


def test_deliveries_go_through_the_environments_proxy_except_to_no_proxy_hosts(
    receiver: tuple[HttpReceiver, str], proxy_environment: pytest.MonkeyPatch,
) -> None:
    app, proxy = receiver  # the receiver stands in for the proxy: it gets the request for the target
    proxy_environment.setenv("HTTP_PROXY", proxy)
    proxy_environment.setenv("NO_PROXY", "direct.example.invalid")
    block = Webhook.model_validate(dict(url="http://hooks.example.invalid/hook", secret=SECRET))
    assert _send(lambda c: WebhookNotifier(block, c), {"body": "{}"}) == {"status": 200}
    [got] = app.at("/hook")
    assert got.headers["host"] == "hooks.example.invalid"
    bypassed = Webhook.model_validate(dict(url="http://direct.example.invalid/hook", secret=SECRET))
    with pytest.raises(DeliveryError, match="unreachable"):  # sent directly: that host does not exist
        _send(lambda c: WebhookNotifier(bypassed, c), {"body": "{}"})
    assert len(app.at("/hook")) == 1


def test_a_rule_cannot_forge_the_signature_headers(receiver: tuple[HttpReceiver, str]) -> None:
    app, url = receiver
    block = Webhook.model_validate(dict(url=f"{url}/hook", secret=SECRET))
    forged = {"X-Ledgerflow-Signature": "sha256=00", "X-Ledgerflow-Delivery": "other"}
    _send(lambda c: WebhookNotifier(block, c), {"body": "{}", "headers": forged}, key="real")
    [got] = app.at("/hook")
    assert got.headers["x-ledgerflow-delivery"] == "real"
    assert verify(SECRET, got.headers["x-ledgerflow-timestamp"], got.body, got.headers["x-ledgerflow-signature"])


def test_webhook_method_from_the_rule_or_the_block(receiver: tuple[HttpReceiver, str]) -> None:
    app, url = receiver
    block = Webhook.model_validate(dict(url=f"{url}/put", secret=SECRET, method="PUT"))
    _send(lambda c: WebhookNotifier(block, c), {"body": "{}"})
    _send(lambda c: WebhookNotifier(block, c), {"body": "{}", "method": "PATCH"})
    assert [r.method for r in app.at("/put")] == ["PUT", "PATCH"]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (400, False)])
def test_http_errors_are_classified(receiver: tuple[HttpReceiver, str], status: int, retryable: bool) -> None:
    app, url = receiver
    app.plans["/hook"] = [status]
    block = Webhook.model_validate(dict(url=f"{url}/hook", secret=SECRET))
    with pytest.raises(DeliveryError) as caught:
        _send(lambda c: WebhookNotifier(block, c), {"body": "{}"})
    assert caught.value.retryable is retryable
    assert f"HTTP {status}" in str(caught.value)


def test_unreachable_is_retryable_and_hides_the_url() -> None:
    from tests.notifications.receivers import free_port

    url = f"http://127.0.0.1:{free_port()}/services/SECRET-TOKEN"
    block = SlackWebhook.model_validate(dict(url=url))
    with pytest.raises(DeliveryError) as caught:
        _send(lambda c: SlackNotifier(block, c), {"text": "x"})
    assert caught.value.retryable
    assert "SECRET-TOKEN" not in str(caught.value)


MAIL = {
    "to": ["oncall@example.com"], "cc": ["boss@example.com"], "subject": "etl failed",
    "body": "plain text body\n", "html": "<p><b>etl</b> failed</p>",
}


def _mail(block: SmtpServer, message: dict[str, Any] = MAIL, key: str = "d-1") -> dict[str, Any]:
    return asyncio.run(EmailNotifier(block).send(message, key))


def _parts(message: Any) -> dict[str, str]:
    return {part.get_content_type(): part.get_payload(decode=True).decode().replace("\r\n", "\n") for part in message.walk()
            if not part.is_multipart()}


def test_email_plain_and_html_without_tls() -> None:
    smtp = SmtpReceiver()
    with serving_smtp(smtp) as port:
        result = _mail(SmtpServer.model_validate(dict(host="127.0.0.1", port=port, security="none", from_address="lf@example.com")))
    assert result == {"recipients": 2, "refused": []}
    [(envelope, message)] = smtp.messages
    assert envelope.mail_from == "lf@example.com"
    assert sorted(envelope.rcpt_tos) == ["boss@example.com", "oncall@example.com"]
    assert message["Subject"] == "etl failed"
    assert message["Message-ID"] == "<d-1@ledgerflow>"
    assert _parts(message) == {"text/plain": "plain text body\n", "text/html": "<p><b>etl</b> failed</p>\n"}


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_tls_with_login(tmp_path: Path, security: str) -> None:
    cert = self_signed(tmp_path)
    smtp = SmtpReceiver(username="bot@example.com", password="hunter2")
    with serving_smtp(smtp, security=security, cert=cert) as port:
        block = SmtpServer.model_validate(dict(host="127.0.0.1", port=port, security=security,
                                               username="bot@example.com", password="hunter2", ca_file=str(cert[0])))
        _mail(block, {**MAIL, "html": None})
    assert smtp.logins == ["bot@example.com"]
    assert smtp.tls_sessions == 1
    [(envelope, message)] = smtp.messages
    assert envelope.mail_from == "bot@example.com"
    assert _parts(message) == {"text/plain": "plain text body\n"}


def test_email_wrong_password_is_not_retried(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    smtp = SmtpReceiver(username="bot@example.com", password="hunter2")
    with serving_smtp(smtp, security="starttls", cert=cert) as port:
        block = SmtpServer.model_validate(dict(host="127.0.0.1", port=port, username="bot@example.com",
                                               password="wrong", ca_file=str(cert[0])))
        with pytest.raises(DeliveryError) as caught:
            _mail(block)
    assert not caught.value.retryable
    assert "login refused" in str(caught.value)
    assert smtp.messages == []


def test_email_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    smtp = SmtpReceiver()
    with serving_smtp(smtp, security="starttls", cert=cert) as port:
        with pytest.raises(DeliveryError):
            _mail(SmtpServer.model_validate(dict(host="127.0.0.1", port=port, security="starttls")))
    assert smtp.messages == []
