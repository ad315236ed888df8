"""Synthetic runs in exactly the event shapes the runtime writes (events/payloads.py), for
tests and benchmarks that need many runs without running flows.

`SyntheticRun` builds one run step by step and `random_run` a varied whole one (tests);
`compact_run` makes the benchmarks' fixed-shape run of 12 events cheaply.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from ledgerflow.events import NewEvent, StreamAppend
from ledgerflow.events.payloads import (
    ArtifactCreated,
    ArtifactUpdated,
    ErrorInfo,
    FlowRunCreated,
    LogEmitted,
    StateChanged,
    TaskRunCreated,
    flow_run_stream,
)
from ledgerflow.events.states import STATE_NAMES, state_event_type

__all__ = ["SyntheticRun", "compact_run", "random_run", "state_event"]


class SyntheticRun:
    """Builds one flow run's stream; each event happens `step` after the previous one."""

    def __init__(
        self,
        flow_name: str,
        clock: datetime,
        *,
        tags: list[str] | None = None,
        deployment_id: str | None = None,
        parent_flow_run_id: str | None = None,
        parent_task_run_id: str | None = None,
        replay_of: str | None = None,
        step: timedelta = timedelta(milliseconds=10),
        run_id: str | None = None,
    ) -> None:
        self.id = run_id or str(uuid.uuid4())
        self.clock = clock
        self.step = step
        self.events: list[NewEvent] = []
        self._occurrences: dict[str, int] = {}
        self._emit("flow-run.created", FlowRunCreated(
            flow_run_id=self.id, flow_name=flow_name, run_name=f"{flow_name}-{self.id[:6]}",
            parameters={"n": 1}, entrypoint=f"flows.py:{flow_name}", tags=tags or [],
            parent_flow_run_id=parent_flow_run_id, parent_task_run_id=parent_task_run_id,
            deployment_id=deployment_id, replay_of=replay_of,
        ).as_data())

    @property
    def stream(self) -> str:
        return flow_run_stream(self.id)

    def _emit(self, type_: str, data: dict[str, Any], after: timedelta | None = None) -> None:
        self.clock += self.step if after is None else after
        self.events.append(NewEvent(type=type_, data=data, occurred=self.clock))

    def state(self, name: str, *, attempt: int = 1, error: str | None = None,
              after: timedelta | None = None) -> None:
        self._emit(state_event_type("flow-run", name), StateChanged(
            flow_run_id=self.id, state_type=STATE_NAMES[name], state_name=name, attempt=attempt,
            error=ErrorInfo(type="ValueError", message=error) if error else None,
        ).as_data(), after)

    def task(self, task_name: str, *, upstream: list[str] | None = None,
             child_flow_run_id: str | None = None, tags: list[str] | None = None) -> str:
        created = self._creation(task_name, upstream, child_flow_run_id, tags)
        self._emit("task-run.created", created.as_data())
        return created.task_run_id

    def reused_task(self, task_name: str, cached_from: str, *, upstream: list[str] | None = None) -> str:
        """A task run a replay reused: one `task-run.Reused` that carries its creation."""
        created = self._creation(task_name, upstream, None, None)
        self._emit("task-run.Reused", created.as_data() | StateChanged(
            flow_run_id=self.id, task_run_id=created.task_run_id, state_type=STATE_NAMES["Reused"],
            state_name="Reused", cached_from=cached_from,
        ).as_data())
        return created.task_run_id

    def _creation(self, task_name: str, upstream: list[str] | None, child_flow_run_id: str | None,
                  tags: list[str] | None) -> TaskRunCreated:
        occurrence = self._occurrences.get(task_name, 0)
        self._occurrences[task_name] = occurrence + 1
        return TaskRunCreated(
            task_run_id=str(uuid.uuid4()), flow_run_id=self.id, task_key=f"flows.{task_name}",
            task_name=task_name, run_name=f"{task_name}-{occurrence}", occurrence=occurrence,
            input_hash=uuid.uuid4().hex[:16], upstream=upstream or [], tags=tags or [],
            parameters={"x": occurrence}, child_flow_run_id=child_flow_run_id,
        )

    def task_state(self, task_id: str, name: str, *, attempt: int = 1, error: str | None = None,
                   cached_from: str | None = None, after: timedelta | None = None) -> None:
        self._emit(state_event_type("task-run", name), StateChanged(
            flow_run_id=self.id, task_run_id=task_id, state_type=STATE_NAMES[name],
            state_name=name, attempt=attempt, cached_from=cached_from,
            error=ErrorInfo(type="ValueError", message=error) if error else None,
        ).as_data(), after)

    def log(self, message: str, *, level: int = 20, task_id: str | None = None) -> None:
        self._emit("log.emitted", LogEmitted(
            flow_run_id=self.id, task_run_id=task_id, level=level,
            level_name={10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR"}.get(level, "INFO"),
            logger="ledgerflow.task" if task_id else "ledgerflow.flow", message=message,
        ).as_data())

    def artifact(self, key: str, data: Any, *, task_id: str | None = None) -> str:
        artifact_id = str(uuid.uuid4())
        self._emit("artifact.created", ArtifactCreated(
            artifact_id=artifact_id, flow_run_id=self.id, task_run_id=task_id, key=key,
            artifact_type="markdown", data=data,
        ).as_data())
        return artifact_id

    def update_artifact(self, artifact_id: str, data: Any) -> None:
        self._emit("artifact.updated", ArtifactUpdated(
            artifact_id=artifact_id, flow_run_id=self.id, data=data,
        ).as_data())

    def append(self) -> StreamAppend:
        return StreamAppend(self.stream, self.events)


def random_run(
    rng: random.Random,
    clock: datetime,
    *,
    flows: tuple[str, ...] = ("etl", "report", "train"),
    tasks: int = 4,
    logs_per_task: int = 0,
    parent: SyntheticRun | None = None,
    replay_of: str | None = None,
) -> SyntheticRun:
    """A whole flow run with `tasks` task runs and random outcomes, retries and reuse."""
    run = SyntheticRun(
        rng.choice(flows), clock,
        tags=rng.sample(["prod", "nightly", "team-a"], rng.randint(0, 2)),
        deployment_id=rng.choice([None, "dep-1", "dep-2"]),
        parent_flow_run_id=parent.id if parent else None, replay_of=replay_of,
        step=timedelta(milliseconds=rng.randint(1, 2000)),
    )
    run.state("Pending")
    run.state("Running")
    previous: list[str] = []
    failed = False
    for n in range(tasks):
        outcome = rng.random()
        if outcome < 0.05:
            previous.append(run.reused_task(f"t{n % 3}", str(uuid.uuid4()), upstream=previous[-1:]))
            continue
        task_id = run.task(f"t{n % 3}", upstream=previous[-1:])
        run.task_state(task_id, "Pending")
        if outcome < 0.1:
            run.task_state(task_id, "Completed" if rng.random() < 0.5 else "Cached",
                           cached_from=str(uuid.uuid4()) if rng.random() < 0.5 else None)
        else:
            attempts = 1 + (rng.random() < 0.2)
            for attempt in range(1, attempts + 1):
                run.task_state(task_id, "Running", attempt=attempt)
                for line in range(logs_per_task):
                    run.log(f"working {line}", task_id=task_id)
                if attempt < attempts:
                    run.task_state(task_id, "AwaitingRetry", attempt=attempt, error="flaky")
            if outcome < 0.8:
                run.task_state(task_id, "Completed", attempt=attempts,
                               after=timedelta(milliseconds=rng.randint(1, 60_000)))
            else:
                run.task_state(task_id, "Failed", attempt=attempts, error="boom")
                failed = True
        previous.append(task_id)
    final = "Failed" if failed else rng.choice(["Completed", "Completed", "Completed", "Crashed"])
    run.state(final, error="a task failed" if failed else None,
              after=timedelta(milliseconds=rng.randint(1, 60_000)))
    return run


def state_event(run_id: str, name: str, at: datetime, task_id: str | None = None) -> NewEvent:
    """A flow run's (or, with `task_id`, a task run's) state event `name` at `at`."""
    kind = "task-run" if task_id else "flow-run"
    data = StateChanged(flow_run_id=run_id, task_run_id=task_id, state_type=STATE_NAMES[name],
                        state_name=name).as_data()
    return NewEvent(type=f"{kind}.{name}", data=data, occurred=at)


def compact_run(rng: random.Random, start: datetime) -> StreamAppend:
    """One flow run: created, Pending, Running, two task runs (created, Running, a log,
    Completed or Failed), and its end: 12 events."""
    run_id = str(uuid.uuid4())
    flow = rng.choice(["etl", "report", "train", "sync", "backup"])
    clock = start
    events = [NewEvent(type="flow-run.created", occurred=clock, data=FlowRunCreated(
        flow_run_id=run_id, flow_name=flow, run_name=f"{flow}-{run_id[:6]}", parameters={"day": 1},
        tags=rng.sample(["prod", "nightly", "team-a"], rng.randint(0, 2)),
        deployment_id=rng.choice([None, "dep-1", "dep-2"]),
    ).as_data())]
    clock += timedelta(milliseconds=50)
    events += [state_event(run_id, "Pending", clock), state_event(run_id, "Running", clock + timedelta(milliseconds=5))]
    upstream: list[str] = []
    failed = False
    for n, task_name in enumerate(("extract", "load")):
        task_id = str(uuid.uuid4())
        clock += timedelta(milliseconds=20)
        events.append(NewEvent(type="task-run.created", occurred=clock, data=TaskRunCreated(
            task_run_id=task_id, flow_run_id=run_id, task_key=f"flows.{task_name}", task_name=task_name,
            run_name=f"{task_name}-0", occurrence=0, upstream=upstream, parameters={"n": n},
        ).as_data()))
        events.append(state_event(run_id, "Running", clock, task_id))
        events.append(NewEvent(type="log.emitted", occurred=clock, data=LogEmitted(
            flow_run_id=run_id, task_run_id=task_id, level=20, level_name="INFO", logger="task",
            message=f"{task_name} working",
        ).as_data()))
        clock += timedelta(milliseconds=rng.randint(10, 30_000))
        outcome = "Failed" if rng.random() < 0.05 else "Completed"
        failed = failed or outcome == "Failed"
        events.append(state_event(run_id, outcome, clock, task_id))
        upstream = [task_id]
    events.append(state_event(run_id, "Failed" if failed else rng.choice(["Completed"] * 30 + ["Crashed"]),
                              clock + timedelta(milliseconds=10)))
    return StreamAppend(flow_run_stream(run_id), events)
