"""Automations as events on both databases: create, change, enable, disable, delete; names unique."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from ledgerflow.events import EventStore
from ledgerflow.notifications import AutomationExists, AutomationNotFound, AutomationSpec, parse_rule
from ledgerflow.notifications.definitions import DEFINITION_TYPES, Automations
from tests.notifications.receivers import wait_until

RULE = """
name: {name}
trigger:
  match: {{events: ["flow-run.Failed"]}}
actions:
  - {{type: slack, block: ops, text: "{{{{ event.type }}}}"}}
"""


def rule(name: str = "etl-failures", **changes: Any) -> AutomationSpec:
    return parse_rule(RULE.format(name=name)).model_copy(update=changes)


def test_lifecycle_is_events_in_the_automation_stream(store: EventStore) -> None:
    automations = Automations(store, actor="test")
    created = automations.create(rule())
    assert created.enabled and automations.get("etl-failures") == created
    assert automations.disable("etl-failures").enabled is False
    assert automations.enable(created.id).enabled is True
    updated = automations.update("etl-failures", rule(description="now described"))
    assert updated.description == "now described" and updated.created == created.created
    wait_until(lambda: [a.name for a in automations.all()] == ["etl-failures"], what="the feed shows it")
    automations.delete("etl-failures")
    with pytest.raises(AutomationNotFound):
        automations.get("etl-failures")
    stream = store.read_stream(f"automation-{created.id}")
    assert [e.type for e in stream] == [
        "automation.created", "automation.disabled", "automation.enabled", "automation.updated", "automation.deleted",
    ]
    assert all(e.meta.actor == "test" for e in stream)
    wait_until(lambda: [e.type for e in store.read_all(types=list(DEFINITION_TYPES))] == [e.type for e in stream],
               what="the feed shows them")


def test_names_are_unique_until_deleted_or_renamed(store: EventStore) -> None:
    automations = Automations(store)
    first = automations.create(rule("a"))
    with pytest.raises(AutomationExists):
        automations.create(rule("a"))
    automations.create(rule("b"))
    with pytest.raises(AutomationExists):
        automations.update("b", rule("a"))
    automations.update("a", rule("c"))
    assert automations.get("c").id == first.id
    automations.create(rule("a"))  # "a" was released by the rename
    automations.delete("c")
    automations.create(rule("c"))
    wait_until(lambda: sorted(a.name for a in automations.all()) == ["a", "b", "c"], what="the feed shows them")


def test_concurrent_creates_of_one_name_one_wins(store_factory: Callable[[], EventStore]) -> None:
    stores = [store_factory() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def create(each: EventStore) -> None:
        barrier.wait()
        try:
            Automations(each).create(rule("race"))
            outcomes.append("created")
        except AutomationExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=create, args=(each,)) for each in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
    wait_until(lambda: [a.name for a in Automations(stores[0]).all()] == ["race"], what="the feed shows it")
