"""Deployments: a flow's entrypoint, default parameters, tags, work pool and queue, schedules,
an optional limit on concurrent runs, description and version, kept as events in the stream
`deployment-<id>` (id = `derived_id("deployment", "flow-name/deployment-name")`, so deploying
the same name again is the same deployment).

    deployment.created   {deployment_id, name, definition, paused}
    deployment.updated   {deployment_id, name, definition, changed: [field, ...]}
    deployment.paused / deployment.resumed / deployment.deleted   {deployment_id, name}

`fold_deployment(events)` is the pure fold; the write use cases (`apply_deployment`, `pause_`,
`resume_`, `delete_deployment`) append with the stream version they decided on. Applying an
unchanged definition writes nothing, so `ledgerflow deploy` twice is a no-op.

Each active schedule has a `schedule_id` that names what decides its runs (the schedule, the
deployment's run-shaping fields) and the stream position since which it has been in force
without a break. A slot's run id is `derived_id("slot", deployment_id, schedule_id, slot)`:
two schedulers, restarts and unchanged redeploys give the same ids (one run per slot), while a
changed schedule, a pause and resume, or a delete and re-create give new ones.

A deployment's `concurrency_limit` is held by a lease stream `deployment-concurrency-<id>`:
an executor appends `concurrency.acquired` (its run among the holders) with the version it
read, before it claims the run, so of two racing executors one sees the other's lease.
Holders whose runs have finished no longer count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledgerflow.events.errors import ConcurrencyConflict, InvalidEvent
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import NO_STREAM, EventMeta, ExpectedVersion, NewEvent, StoredEvent, StreamAppend, new_id, utcnow
from ledgerflow.events.runs import RunLog, flow_run_request
from ledgerflow.events.schedules import Schedule

__all__ = [
    "ApplyResult",
    "Deployment",
    "DeploymentError",
    "DeploymentNotFound",
    "DeploymentSpec",
    "InvalidParameters",
    "acquire_concurrency_slot",
    "apply_deployment",
    "concurrency_stream",
    "delete_deployment",
    "deployment_id",
    "deployment_stream",
    "fold_deployment",
    "last_event",
    "merged_parameters",
    "pause_deployment",
    "read_deployment",
    "request_deployment_run",
    "resume_deployment",
    "run_request",
    "slot_run_id",
    "spec_from",
]

_ATTEMPTS = 20
RUN_SHAPING = ("flow_name", "entrypoint", "working_dir", "parameters", "tags", "work_pool", "work_queue")
"""Fields that decide what a scheduled run does: changing one replaces the future runs."""


class DeploymentError(Exception):
    """A deployment cannot be created, changed or run as asked."""


class DeploymentNotFound(DeploymentError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no deployment {name!r}")
        self.name = name


class InvalidParameters(DeploymentError, ValueError):
    """Parameters that the flow does not take, or required ones missing."""


def deployment_id(name: str) -> UUID:
    """The id of deployment `flow-name/deployment-name`."""
    flow_name, sep, short = name.partition("/")
    if not sep or not flow_name or not short or "/" in short:
        raise DeploymentError(f"a deployment is named 'flow-name/deployment-name', not {name!r}")
    return derived_id("deployment", name)


def deployment_stream(ident: str | UUID) -> str:
    return f"deployment-{ident}"


def concurrency_stream(ident: str | UUID) -> str:
    return f"deployment-concurrency-{ident}"


def _name(value: str, what: str) -> str:
    value = value.strip()
    if not value or "/" in value or len(value) > 200:
        raise ValueError(f"a {what} name is 1-200 characters without '/', not {value!r}")
    return value


class DeploymentSpec(BaseModel):
    """What a user declares: the definition a deployment's events carry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow_name: str
    name: str
    entrypoint: str = Field(min_length=3, max_length=1000)
    working_dir: str | None = Field(default=None, max_length=1000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] | None = None
    """The flow's parameters as JSON Schema (`properties`, `required`), taken from its signature."""
    tags: list[str] = Field(default_factory=list, max_length=100)
    work_pool: str | None = Field(default="default", max_length=200)
    work_queue: str | None = Field(default=None, max_length=200)
    schedules: list[Schedule] = Field(default_factory=list, max_length=100)
    concurrency_limit: int | None = Field(default=None, ge=1, le=10_000)
    description: str | None = Field(default=None, max_length=10_000)
    version: str | None = Field(default=None, max_length=200)

    @field_validator("flow_name")
    @classmethod
    def _flow(cls, value: str) -> str:
        return _name(value, "flow")

    @field_validator("name")
    @classmethod
    def _deployment(cls, value: str) -> str:
        return _name(value, "deployment")

    @field_validator("parameters")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            orjson.dumps(value)
        except TypeError as exc:
            raise ValueError(f"parameters must be JSON: {exc}") from None
        return value

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    @property
    def id(self) -> UUID:
        return derived_id("deployment", self.full_name)

    def as_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Deployment:
    """A deployment as its stream tells it (`fold_deployment`)."""

    id: str
    spec: DeploymentSpec
    paused: bool
    deleted: bool
    version: int
    """The stream's version."""
    created: datetime
    updated: datetime
    since: Mapping[str, int] = field(default_factory=dict)
    """Run-deciding key of each schedule in force -> stream position it has been in force since."""

    @property
    def name(self) -> str:
        return self.spec.full_name

    def schedule_key(self, schedule: Schedule) -> str:
        shaping = {name: getattr(self.spec, name) for name in RUN_SHAPING}
        return orjson.dumps({"schedule": schedule.key(), "run": shaping}, option=orjson.OPT_SORT_KEYS).decode()

    def active_schedules(self) -> list[tuple[str, Schedule]]:
        """(schedule_id, schedule) of every schedule whose runs the scheduler materialises."""
        found: dict[str, tuple[str, Schedule]] = {}
        for schedule in _effective(self):
            key = self.schedule_key(schedule)
            since = self.since.get(key)
            if since is not None and key not in found:
                found[key] = (str(derived_id("schedule", self.id, since, key)), schedule)
        return list(found.values())

    def schedule_ids(self) -> set[str]:
        return {schedule_id for schedule_id, _ in self.active_schedules()}


def _effective(deployment: Deployment) -> list[Schedule]:
    if deployment.paused or deployment.deleted:
        return []
    return [schedule for schedule in deployment.spec.schedules if schedule.active]


def evolve_deployment(state: Deployment | None, event: StoredEvent) -> Deployment | None:
    """The deployment after one event of its stream."""
    kind = event.type.partition(".")[2]
    data = event.data
    at = event.stream_position
    if kind == "created":
        spec = DeploymentSpec.model_validate(data["definition"])
        new = Deployment(str(data["deployment_id"]), spec, bool(data.get("paused")), False, at, event.occurred,
                         event.occurred)
    elif state is None:
        return None
    elif kind == "updated":
        spec = DeploymentSpec.model_validate(data["definition"])
        new = Deployment(state.id, spec, state.paused, state.deleted, at, state.created, event.occurred, state.since)
    elif kind in ("paused", "resumed"):
        new = Deployment(state.id, state.spec, kind == "paused", state.deleted, at, state.created, event.occurred,
                         state.since)
    elif kind == "deleted":
        new = Deployment(state.id, state.spec, state.paused, True, at, state.created, event.occurred, state.since)
    else:
        return Deployment(state.id, state.spec, state.paused, state.deleted, at, state.created, state.updated,
                          state.since)
    before = dict(state.since) if state is not None and kind != "created" else {}
    keys = {new.schedule_key(schedule) for schedule in _effective(new)}
    since = {key: before.get(key, at) for key in keys}
    return Deployment(new.id, new.spec, new.paused, new.deleted, new.version, new.created, new.updated, since)


def fold_deployment(events: Iterable[StoredEvent]) -> Deployment | None:
    state: Deployment | None = None
    for event in events:
        if event.type.startswith("deployment."):
            state = evolve_deployment(state, event)
    return state


def read_deployment(log: RunLog, ident: str | UUID) -> Deployment | None:
    """The deployment with id (or name `flow/deployment`) `ident`; None if it never existed."""
    text = str(ident)
    key = deployment_id(text) if "/" in text else text
    return fold_deployment(log.read_stream(deployment_stream(key)))


def _existing(log: RunLog, ident: str | UUID) -> Deployment:
    found = read_deployment(log, ident)
    if found is None or found.deleted:
        raise DeploymentNotFound(str(ident))
    return found


@dataclass(frozen=True)
class ApplyResult:
    deployment: Deployment
    outcome: Literal["created", "updated", "unchanged"]
    changed: tuple[str, ...] = ()


def _event(kind: str, deployment_id: str, name: str, actor: str | None, **data: Any) -> NewEvent:
    return NewEvent(type=f"deployment.{kind}", data={"deployment_id": deployment_id, "name": name, **data},
                    meta=EventMeta(actor=actor))


def apply_deployment(
    log: RunLog, spec: DeploymentSpec, *, paused: bool | None = None, actor: str | None = None
) -> ApplyResult:
    """Create the deployment, or update it to `spec`; nothing is written when it already is
    `spec` (and paused as asked). `paused`: None leaves a live deployment as it is."""
    ident = str(spec.id)
    stream = deployment_stream(ident)
    for _ in range(_ATTEMPTS):
        history = log.read_stream(stream)
        current = fold_deployment(history)
        version = history[-1].stream_position if history else 0
        events: list[NewEvent] = []
        changed: tuple[str, ...] = ()
        if current is None or current.deleted:
            outcome: Literal["created", "updated", "unchanged"] = "created"
            events.append(_event("created", ident, spec.full_name, actor, definition=spec.as_data(),
                                 paused=bool(paused)))
        else:
            old, new = current.spec.as_data(), spec.as_data()
            changed = tuple(name for name in new if old.get(name) != new[name])
            outcome = "updated" if changed else "unchanged"
            if changed:
                events.append(_event("updated", ident, spec.full_name, actor, definition=new, changed=list(changed)))
            if paused is not None and paused != current.paused:
                events.append(_event("paused" if paused else "resumed", ident, spec.full_name, actor))
        if not events:
            assert current is not None
            return ApplyResult(current, "unchanged")
        try:
            stored = log.append_streams([StreamAppend(stream, events, version)])
        except ConcurrencyConflict:
            continue
        state = fold_deployment([*history, *stored])
        assert state is not None
        return ApplyResult(state, outcome if changed or outcome == "created" else "updated", changed)
    raise DeploymentError(f"deployment {spec.full_name} kept changing under {_ATTEMPTS} attempts to apply it")


def _set(log: RunLog, ident: str | UUID, kind: str, wanted: Callable[[Deployment], bool], actor: str | None) -> Deployment:
    for _ in range(_ATTEMPTS):
        current = _existing(log, ident)
        if wanted(current):
            return current
        try:
            log.append_streams([StreamAppend(deployment_stream(current.id),
                                             [_event(kind, current.id, current.name, actor)], current.version)])
        except ConcurrencyConflict:
            continue
        return _existing(log, current.id) if kind != "deleted" else _deleted(log, current.id)
    raise DeploymentError(f"deployment {ident} kept changing under {_ATTEMPTS} attempts")


def _deleted(log: RunLog, ident: str) -> Deployment:
    found = read_deployment(log, ident)
    assert found is not None
    return found


def pause_deployment(log: RunLog, ident: str | UUID, actor: str | None = None) -> Deployment:
    """Stop scheduling runs (the scheduler cancels its future unstarted ones). Idempotent."""
    return _set(log, ident, "paused", lambda d: d.paused, actor)


def resume_deployment(log: RunLog, ident: str | UUID, actor: str | None = None) -> Deployment:
    return _set(log, ident, "resumed", lambda d: not d.paused, actor)


def delete_deployment(log: RunLog, ident: str | UUID, actor: str | None = None) -> Deployment:
    """Delete the deployment (its stream stays: it is the log); future unstarted runs are cancelled."""
    return _set(log, ident, "deleted", lambda d: d.deleted, actor)


# -- runs of a deployment -------------------------------------------------------------------


def merged_parameters(spec: DeploymentSpec, *layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The deployment's parameters with `layers` over them, checked against its flow's
    signature (unknown names, missing required ones): raises InvalidParameters."""
    values = dict(spec.parameters)
    for layer in layers:
        values.update(layer or {})
    schema = spec.parameter_schema
    if schema:
        known = set(schema.get("properties", {}))
        if not schema.get("additionalProperties"):
            unknown = sorted(set(values) - known)
            if unknown:
                raise InvalidParameters(
                    f"flow {spec.flow_name!r} takes no parameter {', '.join(map(repr, unknown))} "
                    f"(it takes {', '.join(sorted(known)) or 'none'})"
                )
        missing = sorted(set(schema.get("required", [])) - set(values))
        if missing:
            raise InvalidParameters(f"flow {spec.flow_name!r} needs parameter {', '.join(map(repr, missing))}")
    try:
        orjson.dumps(values)
    except TypeError as exc:
        raise InvalidParameters(f"parameters must be JSON: {exc}") from None
    return values


def slot_run_id(deployment: str, schedule_id: str, slot: datetime) -> UUID:
    return derived_id("slot", deployment, schedule_id, slot.isoformat())


def run_request(
    deployment: Deployment,
    parameters: Mapping[str, Any],
    *,
    flow_run_id: UUID,
    scheduled_time: datetime,
    actor: str,
    expected_version: ExpectedVersion = NO_STREAM,
    **links: Any,
) -> StreamAppend:
    """The append that requests a run of `deployment` (`flow-run.created` + `flow-run.Scheduled`);
    `links`: parent_flow_run_id, parent_task_run_id, root_flow_run_id, extra."""
    spec = deployment.spec
    extra = {"deployment_name": spec.full_name, **({"work_queue": spec.work_queue} if spec.work_queue else {}),
             **links.pop("extra", {})}
    return flow_run_request(
        flow_name=spec.flow_name, entrypoint=spec.entrypoint, working_dir=spec.working_dir,
        parameters=parameters, scheduled_time=scheduled_time, tags=spec.tags, deployment_id=deployment.id,
        work_pool=spec.work_pool, flow_run_id=flow_run_id, actor=actor, extra=extra,
        expected_version=expected_version, **links,
    )


def request_deployment_run(
    log: RunLog,
    ident: str | UUID,
    *,
    parameters: Mapping[str, Any] | None = None,
    scheduled_time: datetime | None = None,
    flow_run_id: UUID | None = None,
    parent_flow_run_id: str | None = None,
    parent_task_run_id: str | None = None,
    root_flow_run_id: str | None = None,
    actor: str = "api",
) -> StoredEvent:
    """Request a run of the deployment now (or at `scheduled_time`); its `flow-run.Scheduled`.
    Raises DeploymentNotFound, InvalidParameters."""
    deployment = _existing(log, ident)
    values = merged_parameters(deployment.spec, parameters)
    append = run_request(
        deployment, values, flow_run_id=flow_run_id or new_id(), scheduled_time=scheduled_time or utcnow(),
        actor=actor, parent_flow_run_id=parent_flow_run_id, parent_task_run_id=parent_task_run_id,
        root_flow_run_id=root_flow_run_id or parent_flow_run_id,
    )
    return log.append_streams([append])[1]


# -- the concurrency lease ------------------------------------------------------------------


def last_event(log: RunLog, stream: str) -> StoredEvent | None:
    """The stream's last event, found with O(log n) one-event reads (a lease stream grows by
    one event per run and is read before every claim)."""
    first = log.read_stream(stream, 1, 1)
    if not first:
        return None
    low, high = 1, 2
    found = first[0]
    while True:
        probe = log.read_stream(stream, high, 1)
        if not probe:
            break
        found, low, high = probe[0], high, high * 2
    while high - low > 1:  # `low` exists, `high` does not
        middle = (low + high) // 2
        probe = log.read_stream(stream, middle, 1)
        if probe:
            found, low = probe[0], middle
        else:
            high = middle
    return found


def acquire_concurrency_slot(
    log: RunLog, deployment: str, flow_run_id: str, limit: int, active: Callable[[str], bool],
) -> bool:
    """Take one of the deployment's `limit` slots for run `flow_run_id` (True), or find them all
    held by runs that are `active` (False). Taking a slot the run already holds is a no-op."""
    stream = concurrency_stream(deployment)
    for _ in range(_ATTEMPTS):
        last = last_event(log, stream)
        holders = [str(h) for h in (last.data.get("holders", []) if last else [])]
        if flow_run_id in holders:
            return True
        holding = [holder for holder in holders if active(holder)]
        if len(holding) >= limit:
            return False
        event = NewEvent(type="concurrency.acquired", data={
            "deployment_id": deployment, "flow_run_id": flow_run_id, "holders": [*holding, flow_run_id],
            "limit": limit,
        })
        try:
            log.append_streams([StreamAppend(stream, [event], last.stream_position if last else 0)])
        except ConcurrencyConflict:
            continue
        return True
    return False


def spec_from(data: Mapping[str, Any]) -> DeploymentSpec:
    """A DeploymentSpec from user input; InvalidEvent with one readable line when it is wrong."""
    try:
        return DeploymentSpec.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise InvalidEvent(f"invalid deployment: {problems}") from None
