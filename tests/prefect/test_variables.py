"""Prefect's `Variable` (docs: "Set and get variables"): values kept as events in a stream per
variable, embedded and against a live server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledgerflow import Variable, flow
from ledgerflow.api.http.app import create_app
from ledgerflow.events import EventStore, open_store
from ledgerflow.runtime import config
from tests.api.conftest import api_settings, serving, settings_for


@flow(log_prints=True)
def space_mission_sync(mission_name: str) -> str:
    crew = Variable.get("crew_members", default=["Backup1", "Backup2"])
    return f"Launching {mission_name} with crew: {', '.join(crew)}"


@flow(log_prints=True)
async def space_mission_async(mission_name: str) -> str:
    crew = await Variable.get("crew_members", default=["Backup1", "Backup2"])
    await Variable.aset("last_mission", mission_name, overwrite=True)
    return f"Launching {mission_name} with crew: {', '.join(crew)}"


def test_the_documented_round_trip(runs: EventStore) -> None:
    assert Variable.set("answer", 42) == Variable(name="answer", value=42, tags=[])
    assert Variable.get("answer") == 42
    assert Variable.set("answer", 9001, overwrite=True) == Variable(name="answer", value=9001, tags=[])
    assert Variable.unset("answer") is True
    assert Variable.get("answer", "fallback") == "fallback"
    assert Variable.unset("answer") is False
    stream = runs.read_stream("variable-answer")
    assert [(e.type, e.data.get("value")) for e in stream] == [
        ("variable.set", 42), ("variable.set", 9001), ("variable.unset", None),
    ]


def test_setting_an_existing_variable_needs_overwrite(runs: EventStore) -> None:
    Variable.set("region", "eu", tags=["infra"])
    with pytest.raises(ValueError, match="already exists. Use `overwrite=True`"):
        Variable.set("region", "us")
    assert Variable.get("region") == "eu"
    assert Variable.set("region", "us", overwrite=True) == Variable(name="region", value="us", tags=["infra"])


def test_names_and_values_are_checked(runs: EventStore) -> None:
    with pytest.raises(ValueError, match="lowercase"):
        Variable.set("Not Allowed", 1)
    with pytest.raises(ValueError, match="at most 5000"):
        Variable.set("big", "x" * 5001)
    with pytest.raises(ValueError, match="must be JSON"):
        Variable.set("odd", object())


def test_flows_read_variables_sync_and_async(runs: EventStore) -> None:
    assert space_mission_sync("Mars") == "Launching Mars with crew: Backup1, Backup2"
    Variable.set("crew_members", ["Zaphod", "Arthur", "Trillian"])
    assert space_mission_sync("Mars") == "Launching Mars with crew: Zaphod, Arthur, Trillian"
    assert asyncio.run(space_mission_async("Venus")) == "Launching Venus with crew: Zaphod, Arthur, Trillian"
    assert Variable.get("last_mission") == "Venus"


def test_racing_creators_one_wins(runs: EventStore) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def create(value: int) -> None:
        barrier.wait()
        try:
            Variable.set("winner", value)
            outcomes.append("set")
        except ValueError:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "set"]
    assert len(runs.read_stream("variable-winner")) == 1


@pytest.fixture
def served_runtime(store_url: str, tmp_path: Path) -> Iterator[str]:
    """This process's runs talk to a live server (LEDGERFLOW_API_URL)."""
    with serving(create_app(settings_for(tmp_path, store_url), api_settings())) as url:
        runtime = config.for_home(tmp_path / "client", store_url, api_url=url)
        previous = config.install(runtime)
        try:
            yield url
        finally:
            config.install(previous)
            runtime.close()


def test_variables_through_a_server(served_runtime: str, store_url: str) -> None:
    assert Variable.set("through_http", {"a": 1}) == Variable(name="through_http", value={"a": 1})
    with pytest.raises(ValueError, match="already exists"):
        Variable.set("through_http", 2)
    assert Variable.get("through_http") == {"a": 1}
    with open_store(store_url) as store:
        assert [e.type for e in store.read_stream("variable-through_http")] == ["variable.set"]
