"""Property: however the log is split into batches, and whatever crashes and restarts happen
between and inside them, the projections end up exactly as a rebuild from scratch makes them.
On SQLite and PostgreSQL, each example on a database of its own."""

from __future__ import annotations

import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from ledgerflow.events import NewEvent, StreamAppend, open_store
from ledgerflow.events.store import EventStore
from ledgerflow.projections.runner import DEFAULT_PROJECTIONS, ProjectionRunner
from testdata.synthetic import SyntheticRun, random_run
from tests.conftest import BACKENDS
from tests.projections.support import (
    T0,
    Crash,
    Exploding,
    interleave,
    snapshot,
    wait_visible,
)


@contextmanager
def fresh_store(backend: str, postgres_server_url: str) -> Iterator[EventStore]:
    if backend == "sqlite":
        folder = tempfile.mkdtemp()
        store = open_store(f"sqlite:///{folder}/log.db")
        try:
            yield store
        finally:
            store.close()
            shutil.rmtree(folder)
        return
    schema = f"p_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = make_url(postgres_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    store = open_store(url.render_as_string(hide_password=False))
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def generate_runs(rng: random.Random, count: int) -> list[SyntheticRun]:
    """Flows of tasks with random outcomes and retries, some of them subflows or replays."""
    runs: list[SyntheticRun] = []
    for n in range(count):
        parent = rng.choice(runs) if runs and rng.random() < 0.3 else None
        replay_of = rng.choice(runs).id if runs and rng.random() < 0.2 else None
        runs.append(random_run(
            rng, T0 + timedelta(minutes=rng.randint(0, 3000)), tasks=rng.randint(0, 4),
            parent=parent, replay_of=replay_of,
        ))
    return runs


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_incremental_in_any_batches_with_crashes_equals_a_rebuild(
    backend: str, postgres_server_url: str, data: st.DataObject
) -> None:
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    runs = generate_runs(rng, data.draw(st.integers(1, 6), label="runs"))
    # Each step appends a few events of a few streams, interleaved as concurrent runs would be.
    pieces = interleave(rng, [[(run.stream, event) for event in run.events] for run in runs])
    steps: list[list[tuple[str, NewEvent]]] = []
    while pieces:
        size = rng.randint(1, 12)
        steps.append(pieces[:size])
        pieces = pieces[size:]

    with fresh_store(backend, postgres_server_url) as store:
        for step in steps:
            by_stream: dict[str, list[NewEvent]] = {}
            for stream, event in step:
                by_stream.setdefault(stream, []).append(event)
            appended = store.append_streams([StreamAppend(s, evs) for s, evs in by_stream.items()])
            if data.draw(st.booleans(), label="catch up now"):
                # A fresh runner each time: a process restarted with only its checkpoints.
                batch = data.draw(st.integers(1, 30), label="batch size")
                crash_on = data.draw(st.integers(0, 4), label="crash on fold (0: none)")
                projections = [
                    Exploding(p, crash_on) if n == 1 and crash_on else p
                    for n, p in enumerate(DEFAULT_PROJECTIONS)
                ]
                try:
                    ProjectionRunner(store, projections, batch_size=batch).catch_up(
                        limit=data.draw(st.integers(1, 60), label="events before stopping")
                    )
                except Crash:
                    pass
        wait_visible(store, appended)
        runner = ProjectionRunner(store, batch_size=data.draw(st.integers(1, 50), label="final batch"))
        runner.catch_up()
        for projection in DEFAULT_PROJECTIONS:
            incremental = snapshot(runner, projection.name)
            runner.rebuild(projection.name)
            assert snapshot(runner, projection.name) == incremental, projection.name
