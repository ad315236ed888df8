"""`ledgerflow automation ...` and `ledgerflow block ...` as a user runs them, on both
databases, and against a server: exit codes, messages naming the field, secrets never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from ledgerflow.events import open_store
from tests.notifications.history import Runs
from tests.notifications.receivers import wait_until

LEDGERFLOW = str(Path(sys.executable).with_name("ledgerflow"))

RULE = """
name: etl-failures
trigger:
  match: {events: ["flow-run.Failed"], flow_name: nightly-etl}
  cooldown: 10m
actions:
  - {type: slack, block: ops-slack, text: "{{ flow_run.flow_name }} failed: {{ event.data.message }}"}
"""


def cli(home: Path, store_url: str | None, *args: str, api_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(home), COLUMNS="200")
    if store_url:
        env["LEDGERFLOW_DATABASE_URL"] = store_url
    if api_url:
        env["LEDGERFLOW_API_URL"] = api_url
    return subprocess.run([LEDGERFLOW, *args], capture_output=True, text=True, env=env, timeout=120)


def test_automation_commands(tmp_path: Path, store_url: str) -> None:
    rule = tmp_path / "rule.yaml"
    rule.write_text(RULE)
    made = cli(tmp_path, store_url, "automation", "create", "-f", str(rule))
    assert made.returncode == 0, made.stderr
    assert "created automation etl-failures" in made.stdout
    again = cli(tmp_path, store_url, "automation", "create", "-f", str(rule))
    assert again.returncode == 1 and "an automation named 'etl-failures' exists" in again.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(orjson.dumps({"name": "x", "trigger": {"match": {"events": ["a"]}, "threshold": 0},
                                 "actions": [{"type": "slack", "block": "b", "text": "hi"}]}).decode())
    refused = cli(tmp_path, store_url, "automation", "create", "-f", str(bad))
    assert refused.returncode == 1 and "trigger.reactive.threshold" in refused.stderr

    wait_until(lambda: "reactive: flow-run.Failed" in cli(tmp_path, store_url, "automation", "ls").stdout)
    assert cli(tmp_path, store_url, "automation", "disable", "etl-failures").returncode == 0
    shown = cli(tmp_path, store_url, "automation", "inspect", "etl-failures")
    assert shown.returncode == 0 and "disabled" in shown.stdout and "cooldown: 600.0" in shown.stdout
    assert "no firings yet" in shown.stdout
    missing = cli(tmp_path, store_url, "automation", "inspect", "nope")
    assert missing.returncode == 1 and "no automation named 'nope'" in missing.stderr

    store = open_store(store_url)
    try:
        runs = Runs(store, datetime.now(UTC) - timedelta(days=2))
        runs.failed_run(0, "nightly-etl", "disk full")
        runs.failed_run(60, "nightly-etl", "within the cooldown")
    finally:
        store.close()
    tested = cli(tmp_path, store_url, "automation", "test", str(rule), "--since", "30d")
    assert tested.returncode == 0, tested.stderr
    assert "would have fired 1 time(s)" in tested.stdout and "nightly-etl failed: disk full" in tested.stdout
    assert "would have fired 0 time(s)" in cli(tmp_path, store_url, "automation", "test", str(rule), "--since", "1d").stdout
    as_json = orjson.loads(cli(tmp_path, store_url, "automation", "test", str(rule), "--json").stdout)
    assert [f["actions"][0]["message"]["text"] for f in as_json] == ["nightly-etl failed: disk full"]

    assert cli(tmp_path, store_url, "automation", "delete", "etl-failures").returncode == 0
    wait_until(lambda: "no automations" in cli(tmp_path, store_url, "automation", "ls").stdout)


def test_block_commands_never_print_secrets(tmp_path: Path, store_url: str) -> None:
    slack = cli(tmp_path, store_url, "block", "create", "slack-webhook", "ops-slack",
                "--url", "https://hooks.slack.com/services/T0/B0/SUPERSECRET")
    assert slack.returncode == 0, slack.stderr
    smtp = cli(tmp_path, store_url, "block", "create", "smtp", "ops-smtp", "--host", "smtp.example.com",
               "--port", "2525", "--username", "bot@example.com", "--password", "PASSWORD-123", "--tls")
    assert smtp.returncode == 0, smtp.stderr
    hook = cli(tmp_path, store_url, "block", "create", "webhook", "pager", "--url", "https://pager.example.com/in",
               "--secret", "HMAC-SECRET-1", "--header", "Authorization=Bearer TOKEN-9")
    assert hook.returncode == 0, hook.stderr
    listed = cli(tmp_path, store_url, "block", "ls")
    shown = "".join(cli(tmp_path, store_url, "block", "inspect", name).stdout for name in ("ops-slack", "ops-smtp", "pager"))
    everything = slack.stdout + smtp.stdout + hook.stdout + listed.stdout + shown
    for secret in ("SUPERSECRET", "PASSWORD-123", "HMAC-SECRET-1", "TOKEN-9"):
        assert secret not in everything
    assert "https://hooks.slack.com/…/CRET" in listed.stdout and "security=tls" in listed.stdout
    duplicate = cli(tmp_path, store_url, "block", "create", "slack-webhook", "ops-slack", "--url", "https://x.example.com")
    assert duplicate.returncode == 1 and "exists" in duplicate.stderr
    malformed = cli(tmp_path, store_url, "block", "create", "webhook", "w", "--url", "ftp://x", "--secret", "12345678")
    assert malformed.returncode == 1 and "url: must be an http" in malformed.stderr
    assert cli(tmp_path, store_url, "block", "delete", "pager").returncode == 0
    gone = cli(tmp_path, store_url, "block", "inspect", "pager")
    assert gone.returncode == 1 and "no block named 'pager'" in gone.stderr


def test_against_a_server(tmp_path: Path, store_url: str) -> None:
    from ledgerflow.api.http.app import create_app
    from ledgerflow.api.http.settings import ApiSettings
    from tests.api.conftest import serving, settings_for

    with serving(create_app(settings_for(tmp_path / "server", store_url), ApiSettings(run_projections=False))) as server:
        _server_session(tmp_path, server)


def _server_session(tmp_path: Path, server: str) -> None:
    rule = tmp_path / "rule.yaml"
    rule.write_text(RULE)
    client_home = tmp_path / "client"
    made = cli(client_home, None, "block", "create", "slack-webhook", "ops-slack", "--url",
               "https://hooks.slack.com/services/T0/B0/SUPERSECRET", api_url=server)
    assert made.returncode == 0, made.stderr
    assert "SUPERSECRET" not in made.stdout
    assert not (client_home / "secret.key").exists()  # encrypted with the server's key, not ours
    assert cli(client_home, None, "automation", "create", "-f", str(rule), api_url=server).returncode == 0
    wait_until(lambda: "etl-failures" in cli(client_home, None, "automation", "ls", api_url=server).stdout)
    again = cli(client_home, None, "automation", "create", "-f", str(rule), api_url=server)
    assert again.returncode == 1 and "exists" in again.stderr
