"""End to end on both databases: a real flow fails; the automation engine sends a Slack
message, an email and a signed webhook (asserted on what the receivers got), and requests a
replay, which the runtime executes to completion reusing the tasks that had succeeded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ledgerflow.events import EventStore
from ledgerflow.events.runs import read_flow_run, request_flow_run
from ledgerflow.notifications import Automation
from ledgerflow.notifications.blocks import parse_block
from ledgerflow.notifications.engine import AutomationEngine
from ledgerflow.notifications.signing import verify
from ledgerflow.runtime import execute_flow_run
from ledgerflow.runtime.testing import harness
from tests.notifications.receivers import HttpReceiver, SmtpReceiver, mail_parts, serving_http, serving_smtp, wait_until
from tests.notifications.support import Clock, blocks_in, create_automation, outcomes_of, pump, running_engine
from tests.runtime import replay_flows

REPO = Path(__file__).resolve().parents[2]

RULE = """
name: ten-steps-failed
trigger:
  match: {events: ["flow-run.Failed", "flow-run.Crashed"], flow_name: ten_steps}
  for_each: run
  cooldown: 600
actions:
  - {type: slack, block: ops-slack, text: "{{ flow_run.flow_name }} failed: {{ flow_run.error }}"}
  - type: email
    block: ops-smtp
    to: [oncall@example.com]
    subject: "{{ flow_run.flow_name }} failed"
    body: "Run {{ flow_run.run_name }} failed after {{ flow_run.task_runs | length }} task runs."
    html: "<p>Run <b>{{ flow_run.run_name }}</b> failed: {{ flow_run.error }}</p>"
  - {type: webhook, block: pager}
  - {type: replay-flow-run, max_replays: 1}
"""


@pytest.fixture
def http() -> Iterator[tuple[HttpReceiver, str]]:
    app = HttpReceiver()
    with serving_http(app) as url:
        yield app, url


def test_a_failing_flow_alerts_everywhere_and_is_replayed(
    store_url: str, tmp_path: Path, http: tuple[HttpReceiver, str],
) -> None:
    app, url = http
    smtp = SmtpReceiver()
    with harness(store_url) as store, serving_smtp(smtp) as smtp_port:
        blocks = blocks_in(store, tmp_path / "home")
        blocks.create("ops-slack", parse_block("slack-webhook", {"url": f"{url}/slack"}))
        blocks.create("ops-smtp", parse_block("smtp", {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                                                       "from_address": "ledgerflow@example.com"}))
        blocks.create("pager", parse_block("webhook", {"url": f"{url}/hook", "secret": "pager-secret"}))
        automation = create_automation(store, RULE)

        (tmp_path / "fail-7").write_text("")
        original = _run(store, tmp_path)
        assert read_flow_run(store, original).state.name == "Failed"  # type: ignore[union-attr]
        with running_engine(store, blocks, Clock(time.time())) as engine:
            wait_until(lambda: _pumped(engine, store, automation), what="four outcomes")

        outcomes = {o.data["action_type"]: o for o in outcomes_of(store, automation)}
        assert {kind: o.type for kind, o in outcomes.items()} == {
            "slack": "action.succeeded", "email": "action.succeeded", "webhook": "action.succeeded",
            "replay-flow-run": "action.succeeded",
        }
        [slack] = app.at("/slack")
        assert orjson.loads(slack.body) == {"text": "ten_steps failed: RuntimeError: step 7 was told to fail"}
        [(envelope, mail)] = smtp.messages
        assert envelope.rcpt_tos == ["oncall@example.com"] and mail["Subject"] == "ten_steps failed"
        parts = mail_parts(mail)
        assert parts["text/plain"].startswith(f"Run ten_steps-{original.replace('-', '')[-8:]} failed after 7 task runs.")
        assert "failed: RuntimeError: step 7 was told to fail</p>" in parts["text/html"]
        [hook] = app.at("/hook")
        assert verify("pager-secret", hook.headers["x-ledgerflow-timestamp"], hook.body, hook.headers["x-ledgerflow-signature"])
        sent = orjson.loads(hook.body)
        assert (sent["automation"], sent["event"]["type"], sent["flow_run"]["id"]) == ("ten-steps-failed", "flow-run.Failed", original)

        replay = outcomes["replay-flow-run"].data["detail"]["replay_flow_run_id"]
        assert read_flow_run(store, replay).created["replay_of"] == original
        (tmp_path / "fail-7").unlink()
        (tmp_path / "executed").unlink()
        state = execute_flow_run(replay)
        assert state.is_completed() and state.result() == sum(range(1, 11))
        assert replay_flows.executed(tmp_path) == [f"step-{n}" for n in range(7, 11)]


def _run(store: EventStore, folder: Path) -> str:
    scheduled = request_flow_run(store, flow_name="ten_steps", entrypoint="tests.runtime.replay_flows:ten_steps",
                                 working_dir=str(REPO), parameters={"folder": str(folder)})
    run_id = str(scheduled.data["flow_run_id"])
    execute_flow_run(run_id)
    return run_id


def _pumped(engine: AutomationEngine, store: EventStore, automation: Automation) -> bool:
    pump(engine, store)
    return len(outcomes_of(store, automation)) == 4
