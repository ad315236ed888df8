"""Deliveries against real receivers on both databases: retried with backoff, recorded
exactly once, concurrent with a bound, and a slow target holds only its own slots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ledgerflow.events import EventStore, NewEvent
from ledgerflow.notifications.blocks import BlockStore, parse_block
from ledgerflow.notifications.signing import verify
from tests.notifications.receivers import HttpReceiver, serving_http, wait_until
from tests.notifications.support import FAST, create_automation, dispatching, fire_by_hand, outcomes_of, blocks_in

RULE = """
name: {name}
trigger: {{match: {{events: ["custom.*"]}}}}
actions:
  - {{type: webhook, block: {block}, body: '{{{{ {{"n": event.data.n}} | tojson }}}}'}}
"""


@pytest.fixture
def receiver() -> Iterator[tuple[HttpReceiver, str]]:
    app = HttpReceiver()
    with serving_http(app) as url:
        yield app, url


@pytest.fixture
def blocks(store: EventStore, tmp_path: Path) -> BlockStore:
    return blocks_in(store, tmp_path)


def _events(store: EventStore, n: int) -> list[object]:
    return store.append("custom-source", [NewEvent(type="custom.happened", data={"n": i}) for i in range(n)])  # type: ignore[return-value]


def test_fails_twice_then_delivered_exactly_once_more(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, url = receiver
    app.plans["/hook"] = [500, 503]
    blocks.create("hook", parse_block("webhook", {"url": f"{url}/hook", "secret": "secret-123"}))
    automation = create_automation(store, RULE.format(name="hooks", block="hook"))
    [event] = store.append("custom-source", [NewEvent(type="custom.happened", data={"n": 7})])
    [action] = fire_by_hand(store, automation, event)
    with dispatching(store, blocks) as dispatcher:
        dispatcher.submit([action])
        assert dispatcher.wait_idle(30)
        assert dispatcher.submit([action]) == 1  # submitted again after its outcome: delivered again
        assert dispatcher.wait_idle(30)
    hits = app.at("/hook")
    assert len(hits) == 4  # two failures, the delivery, and the explicit second submission
    assert {h.headers["x-ledgerflow-delivery"] for h in hits} == {str(action.id)}
    assert all(verify("secret-123", h.headers["x-ledgerflow-timestamp"], h.body, h.headers["x-ledgerflow-signature"]) for h in hits)
    assert orjson.loads(hits[2].body) == {"n": 7}
    [outcome] = outcomes_of(store, automation)  # one outcome per action, however often delivered
    assert outcome.type == "action.succeeded"
    assert outcome.data["attempts"] == 3 and outcome.data["detail"] == {"status": 200}
    assert outcome.data["action_id"] == str(action.id) and outcome.meta.causation_id == action.id


def test_gives_up_after_the_last_attempt_and_on_a_permanent_error(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, url = receiver
    app.plans["/down"] = [502] * 10
    app.plans["/gone"] = [404] * 10
    blocks.create("down", parse_block("webhook", {"url": f"{url}/down", "secret": "secret-123"}))
    blocks.create("gone", parse_block("webhook", {"url": f"{url}/gone", "secret": "secret-123"}))
    down = create_automation(store, RULE.format(name="down", block="down"))
    gone = create_automation(store, RULE.format(name="gone", block="gone"))
    missing = create_automation(store, RULE.format(name="missing", block="nosuchblock"))
    [event] = store.append("custom-source", [NewEvent(type="custom.happened", data={"n": 1})])
    actions = [a for automation in (down, gone, missing) for a in fire_by_hand(store, automation, event)]
    with dispatching(store, blocks) as dispatcher:
        dispatcher.submit(actions)
        assert dispatcher.wait_idle(30)
    assert len(app.at("/down")) == FAST.attempts and len(app.at("/gone")) == 1
    [(down_out)], [(gone_out)], [(missing_out)] = (outcomes_of(store, a) for a in (down, gone, missing))
    assert (down_out.type, down_out.data["attempts"]) == ("action.failed", FAST.attempts)
    assert "HTTP 502" in down_out.data["error"]
    assert (gone_out.type, gone_out.data["attempts"]) == ("action.failed", 1)
    assert (missing_out.type, missing_out.data["error"]) == ("action.failed", "no block named 'nosuchblock'")


def test_a_slow_target_does_not_hold_up_the_others(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, url = receiver
    app.delays["/slow"] = 30.0
    blocks.create("slow", parse_block("webhook", {"url": f"{url}/slow", "secret": "secret-123", "timeout": 60}))
    blocks.create("fast", parse_block("webhook", {"url": f"{url}/fast", "secret": "secret-123"}))
    slow = create_automation(store, RULE.format(name="slow", block="slow"))
    fast = create_automation(store, RULE.format(name="fast", block="fast"))
    events = store.append("custom-source", [NewEvent(type="custom.happened", data={"n": i}) for i in range(40)])
    slow_actions = [a for e in events for a in fire_by_hand(store, slow, e)]
    fast_actions = [a for e in events[:10] for a in fire_by_hand(store, fast, e)]
    with dispatching(store, blocks, concurrency=8, per_target=3, grace=0.1) as dispatcher:
        dispatcher.submit(slow_actions)
        wait_until(lambda: len(app.at("/slow")) == 3, what="the slow target's slots taken")
        dispatcher.submit(fast_actions)
        wait_until(lambda: len(outcomes_of(store, fast)) == 10, what="the fast target's deliveries")
        assert len(app.at("/slow")) == 3  # never more than its own slots at once
        assert outcomes_of(store, slow) == []
    assert sorted(orjson.loads(h.body)["n"] for h in app.at("/fast")) == list(range(10))


def test_concurrent_deliveries_over_the_shared_session_record_one_outcome_each(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, url = receiver
    app.plans["/hook/0"] = [503, 503]  # retried deliveries among them still get one outcome each
    automations = []
    for i in range(5):
        blocks.create(f"hook-{i}", parse_block("webhook", {"url": f"{url}/hook/{i}", "secret": "secret-123"}))
        automations.append(create_automation(store, RULE.format(name=f"rule-{i}", block=f"hook-{i}")))
    events = store.append("custom-source", [NewEvent(type="custom.happened", data={"n": n}) for n in range(20)])
    actions = {automation.id: [a for e in events for a in fire_by_hand(store, automation, e)] for automation in automations}
    with dispatching(store, blocks, concurrency=16, per_target=4) as dispatcher:
        assert dispatcher.submit([a for each in actions.values() for a in each]) == 100
        assert dispatcher.wait_idle(60)
    hits = [h for i in range(5) for h in app.at(f"/hook/{i}")]
    assert len(hits) == 102  # each action once, and the two answered 503 once more
    assert {h.headers["x-ledgerflow-delivery"] for h in hits} == {str(a.id) for each in actions.values() for a in each}
    for i, automation in enumerate(automations):
        assert {orjson.loads(h.body)["n"] for h in app.at(f"/hook/{i}")} == set(range(20))
        outcomes = outcomes_of(store, automation)
        assert {o.type for o in outcomes} == {"action.succeeded"}
        assert sorted(o.data["action_id"] for o in outcomes) == sorted(str(a.id) for a in actions[automation.id])
