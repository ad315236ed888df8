"""Blocks on both databases: encrypted at rest (the raw table holds no secret), masked when
shown, keys from LEDGERFLOW_SECRET_KEY or generated into the home with mode 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from ledgerflow.events import EventStore, load_settings
from ledgerflow.notifications import BlockExists, BlockNotFound, SecretKeyError, SlackWebhook
from ledgerflow.notifications.blocks import BlockStore, parse_block
from ledgerflow.notifications.errors import BlockError
from ledgerflow.notifications.secretbox import SecretBox, load_keys
from ledgerflow.notifications.tables import blocks as blocks_table
from tests.notifications.receivers import HttpReceiver, serving_http

SLACK_URL = "https://hooks.slack.com/services/T000/B000/verysecrettoken"


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox(load_keys(None, tmp_path / "home"))


@pytest.fixture
def blocks(store: EventStore, box: SecretBox) -> BlockStore:
    return BlockStore.of(store, box)


def _raw_rows(blocks: BlockStore) -> list[tuple[str, str, str]]:
    with blocks.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(blocks_table.c.name, blocks_table.c.block_type, blocks_table.c.secret))]


def test_secrets_are_encrypted_at_rest_and_never_in_events(store: EventStore, blocks: BlockStore) -> None:
    blocks.create("ops-slack", parse_block("slack-webhook", {"url": SLACK_URL}))
    blocks.create("ops-smtp", parse_block("smtp", {"host": "mail.example.com", "username": "bot",
                                                   "password": "smtp-pass-42"}))
    blocks.create("pager", parse_block("webhook", {"url": "https://pager.example.com/in?token=tok-77",
                                                   "secret": "hmac-secret-99", "headers": {"X-Key": "hdr-55"}}))
    rows = _raw_rows(blocks)
    assert [(name, kind) for name, kind, _ in rows] == [("ops-slack", "slack-webhook"), ("ops-smtp", "smtp"), ("pager", "webhook")]
    everything = " ".join(secret for _, _, secret in rows)
    for plaintext in ("verysecrettoken", "smtp-pass-42", "tok-77", "hmac-secret-99", "hdr-55", "mail.example.com"):
        assert plaintext not in everything
    assert not store.read_all()  # blocks write no events at all
    slack = blocks.get("ops-slack")
    assert isinstance(slack, SlackWebhook) and slack.url.get_secret_value() == SLACK_URL


def test_blocks_are_shown_masked(blocks: BlockStore) -> None:
    blocks.create("ops-slack", parse_block("slack-webhook", {"url": SLACK_URL}))
    blocks.create("pager", parse_block("webhook", {"url": "https://pager.example.com/in", "secret": "hmac-secret-99"}))
    shown = orjson.dumps([info.model_dump(mode="json") for info in blocks.list()]).decode()
    assert "hooks.slack.com/…/oken" in shown
    assert "verysecrettoken" not in shown and "hmac-secret-99" not in shown
    assert blocks.info("pager").fields["secret"] == "****"
    assert "verysecrettoken" not in repr(blocks.get("ops-slack"))


def test_names_are_unique_and_delete_removes(blocks: BlockStore) -> None:
    block = parse_block("slack-webhook", {"url": SLACK_URL})
    blocks.create("ops", block)
    with pytest.raises(BlockExists):
        blocks.create("ops", block)
    blocks.delete("ops")
    with pytest.raises(BlockNotFound):
        blocks.get("ops")
    with pytest.raises(BlockNotFound):
        blocks.delete("ops")
    with pytest.raises(BlockError, match="block name"):
        blocks.create("bad name!", block)


def test_malformed_blocks_name_the_field() -> None:
    with pytest.raises(BlockError, match="url: must be an http"):
        parse_block("slack-webhook", {"url": "ftp://x"})
    with pytest.raises(BlockError, match="secret"):
        parse_block("webhook", {"url": "https://x.example.com"})
    with pytest.raises(BlockError, match="unknown block type"):
        parse_block("pagerduty", {})


def test_another_key_cannot_read_and_rotation_can(store: EventStore, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    BlockStore.of(store, SecretBox(load_keys(old, tmp_path))).create("ops", parse_block("slack-webhook", {"url": SLACK_URL}))
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        BlockStore.of(store, SecretBox(load_keys(new, tmp_path))).get("ops")
    rotated = BlockStore.of(store, SecretBox(load_keys(f"{new},{old}", tmp_path)))
    assert isinstance(rotated.get("ops"), SlackWebhook)
    with pytest.raises(SecretKeyError, match="not a Fernet key"):
        SecretBox(load_keys("not-a-key", tmp_path))


def test_the_generated_key_file_is_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = load_keys(None, home)
    assert stat.S_IMODE((home / "secret.key").stat().st_mode) == 0o600
    assert load_keys(None, home) == first
    assert load_keys("", home) == first


@pytest.fixture
def slack_receiver() -> Iterator[tuple[HttpReceiver, str]]:
    app = HttpReceiver()
    with serving_http(app) as url:
        yield app, url


def test_slack_webhook_load_notify_from_flow_code(
    tmp_path: Path, store_url: str, slack_receiver: tuple[HttpReceiver, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, url = slack_receiver
    key = Fernet.generate_key().decode()
    settings = load_settings({"LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_DATABASE_URL": store_url,
                              "LEDGERFLOW_SECRET_KEY": key})
    from ledgerflow.events import open_store

    with open_store(store_url) as opened:
        BlockStore.of(opened, SecretBox.from_settings(settings)).create(
            "ops-slack", parse_block("slack-webhook", {"url": f"{url}/services/x"}))
    for name, value in {"LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_DATABASE_URL": store_url,
                        "LEDGERFLOW_SECRET_KEY": key}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LEDGERFLOW_API_URL", raising=False)
    SlackWebhook.load("ops-slack").notify("nightly ETL done")
    [got] = app.at("/services/x")
    assert orjson.loads(got.body) == {"text": "nightly ETL done"}
    assert not os.path.exists(tmp_path / "secret.key")  # the configured key was used
