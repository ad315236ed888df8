"""For random flow shapes, failure points and parameter changes, a replay executes exactly the
tasks at or after the failure point plus those whose inputs changed, and ends with the result
a fresh run gives."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow import replay
from ledgerflow.events.runs import request_flow_run
from ledgerflow.runtime import execute_flow_run
from ledgerflow.runtime.states import State
from ledgerflow.runtime.testing import harness
from tests.runtime.replay_flows import executed
from tests.runtime.test_execute import REPO


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[list[int]], list[int], int, list[int]]:
    size = draw(st.integers(2, 8))
    upstream = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(size)]
    seeds = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    fail_at = draw(st.integers(0, size - 1))
    changed = [draw(st.integers(0, 3)) if draw(st.booleans()) else seed for seed in seeds]
    return upstream, seeds, fail_at, changed


def values_of(upstream: list[list[int]], seeds: list[int]) -> list[int]:
    values: list[int] = []
    for index, parents in enumerate(upstream):
        values.append(seeds[index] + sum(values[p] for p in parents))
    return values


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_a_replay_reruns_exactly_the_failed_and_the_changed(scenario: tuple[list[list[int]], list[int], int, list[int]]) -> None:
    upstream, seeds, fail_at, new_seeds = scenario
    folder = Path(tempfile.mkdtemp(prefix="ledgerflow-replay-"))
    try:
        with harness() as store:
            (folder / f"fail-node-{fail_at}").write_text("")
            scheduled = request_flow_run(store, flow_name="dag", entrypoint="tests.runtime.replay_flows:dag",
                                         working_dir=str(REPO),
                                         parameters={"folder": str(folder), "upstream": upstream, "seeds": seeds})
            assert execute_flow_run(scheduled.data["flow_run_id"]).is_failed()
            (folder / f"fail-node-{fail_at}").unlink()
            (folder / "executed").unlink()

            replayed = replay(scheduled.data["flow_run_id"], parameters={"seeds": new_seeds})

            assert isinstance(replayed, State) and replayed.is_completed()
            old, new = values_of(upstream, seeds), values_of(upstream, new_seeds)
            same_inputs = [
                seeds[i] == new_seeds[i] and [old[p] for p in upstream[i]] == [new[p] for p in upstream[i]]
                for i in range(len(upstream))
            ]
            expected = [f"node-{i}" for i in range(len(upstream)) if i >= fail_at or not same_inputs[i]]
            assert executed(folder) == expected
            assert replayed.result() == new  # what a fresh run with the new seeds returns
    finally:
        shutil.rmtree(folder, ignore_errors=True)
