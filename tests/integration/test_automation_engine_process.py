"""`ledgerflow automations run` as its own process, on both databases: killed with SIGKILL
between recording a firing and delivering it, then restarted, it delivers exactly once (once
the dead engine's lease has run out, LEASE seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import select

from ledgerflow.events import Cursor, EventStore, open_store
from ledgerflow.events.transactions import engine_of
from ledgerflow.notifications.blocks import BlockStore, parse_block
from ledgerflow.notifications.definitions import Automations
from ledgerflow.notifications.model import parse_rule
from ledgerflow.notifications.secretbox import SecretBox, load_keys
from ledgerflow.notifications.tables import engine_state
from tests.notifications.history import Runs
from tests.notifications.receivers import HttpReceiver, free_port, serving_http_on, wait_until
from tests.notifications.support import outcomes_of

LEDGERFLOW = str(Path(sys.executable).with_name("ledgerflow"))

RULE = """
name: page-on-failure
trigger: {match: {events: ["flow-run.Failed"]}}
actions: [{type: webhook, block: pager, body: '{"run": "{{ flow_run.id }}"}'}]
"""


def _engine(home: Path, store_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(home), LEDGERFLOW_DATABASE_URL=store_url)
    process = subprocess.Popen([LEDGERFLOW, "automations", "run"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "automation engine running" in line, line
    return process


def _stop(process: subprocess.Popen[str], signum: int) -> int:
    process.send_signal(signum)
    code = process.wait(30)
    assert process.stdout is not None
    process.stdout.close()
    return code


def _settled(store: EventStore, cursor: str) -> bool:
    """Whether the engine's saved state is past `cursor` with nothing pending."""
    with engine_of(store).connect() as conn:
        row = conn.execute(select(engine_state.c.cursor, engine_state.c.state)).first()
    return row is not None and Cursor.parse(row.cursor) >= Cursor.parse(cursor) and not orjson.loads(row.state)["pending"]


def test_killed_between_firing_and_delivery_then_restarted_delivers_once(tmp_path: Path, store_url: str) -> None:
    port = free_port()  # nothing listens yet: the first engine cannot deliver
    store = open_store(store_url)
    try:
        BlockStore.of(store, SecretBox(load_keys(None, tmp_path))).create(
            "pager", parse_block("webhook", {"url": f"http://127.0.0.1:{port}/hook", "secret": "pager-secret"}))
        automation = Automations(store).create(parse_rule(RULE))
        first = _engine(tmp_path, store_url)
        try:
            runs = Runs(store, datetime.now(UTC))
            run, _ = runs.failed_run(0, "etl", "disk full")
            stream = f"automation-{automation.id}"
            wait_until(lambda: any(e.type == "action.triggered" for e in store.read_stream(stream)), what="the firing")
        finally:
            assert _stop(first, signal.SIGKILL) == -signal.SIGKILL
        assert outcomes_of(store, automation) == []

        receiver = HttpReceiver()
        with serving_http_on(receiver, port):
            for _ in range(2):  # the restart delivers; a second restart has nothing left to deliver
                again = _engine(tmp_path, store_url)
                try:
                    wait_until(lambda: len(outcomes_of(store, automation)) == 1, what="the outcome")
                    wait_until(lambda: _settled(store, outcomes_of(store, automation)[0].cursor), what="the engine saw it")
                finally:
                    assert _stop(again, signal.SIGTERM) == 0
        [delivered] = receiver.at("/hook")
        [outcome] = outcomes_of(store, automation)
        assert outcome.type == "action.succeeded"
        assert delivered.headers["x-ledgerflow-delivery"] == outcome.data["action_id"]
        assert delivered.body == f'{{"run": "{run}"}}'.encode()
    finally:
        store.close()
