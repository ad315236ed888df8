"""Runs handed out to workers are held in the database, so every server process on it
(`server start --workers N`, or several hosts) sees the same offers: two processes handing out
a pool's runs at once never hand one run twice nor more runs than the pool's limit allows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ledgerflow.api.http.offers import RunOffers
from ledgerflow.events import EventStore, open_store
from ledgerflow.events.deployments import apply_deployment, run_request
from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.workpools import create_work_pool, read_work_pool
from ledgerflow.projections.pool_queries import DueRun, due_pool_runs
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.runner import engine_of
from ledgerflow.runtime.deployments import build_spec
from tests.workers.conftest import REPO

Server = Callable[[int], list[DueRun]]
"""One server process's `due-runs`: up to N runs of the pool, through its own offers."""


@pytest.fixture
def servers(store_url: str) -> Iterator[Callable[[float], Server]]:
    """A pool with a concurrency limit of 3 and 10 due runs; each call opens another 'server
    process' on the database (its own store, read model and offers) with this hold time."""
    opened: list[EventStore] = []
    with open_store(store_url) as store:
        create_work_pool(store, "shared", concurrency_limit=3)
        spec = build_spec("tests/workers/flows.py:mark", name="offers", working_dir=REPO, parameters={"folder": "x"},
                          work_pool="shared")
        deployment = apply_deployment(store, spec).deployment
        store.append_streams([run_request(deployment, {"folder": "x"}, flow_run_id=new_id(), scheduled_time=utcnow(),
                                          actor="test") for _ in range(10)])
        ReadModel(store).refresh()  # the projections, as a server's projection service keeps them

    def server(hold_seconds: float) -> Server:
        opened.append(open_store(store_url))
        read_model, offers = ReadModel(opened[-1], catch_up=False), RunOffers(engine_of(opened[-1]), hold_seconds)
        pool = read_work_pool(opened[-1], "shared")
        return lambda limit: offers.hand_out("shared", lambda held: due_pool_runs(read_model, pool, limit=limit, offered=held))

    yield server
    for each in opened:
        each.close()


def test_two_server_processes_never_hand_out_one_run_twice_nor_past_the_pools_limit(
    servers: Callable[[float], Server],
) -> None:
    first, second = servers(30.0), servers(30.0)
    handed: list[str] = []
    lock = threading.Lock()

    def poll(server: Server) -> None:
        for _ in range(5):
            chosen = server(2)
            with lock:
                handed.extend(run.id for run in chosen)

    threads = [threading.Thread(target=poll, args=(server,)) for server in (first, second) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(handed) == len(set(handed)) == 3  # the pool's limit, each run once


def test_an_offer_not_claimed_in_time_lapses_and_the_run_is_handed_out_again(
    servers: Callable[[float], Server],
) -> None:
    first, second = servers(0.5), servers(0.5)
    handed = {run.id for run in first(3)}
    assert len(handed) == 3
    assert second(3) == []  # held for the first server's worker, who has not claimed them
    time.sleep(0.6)
    assert {run.id for run in second(3)} == handed
