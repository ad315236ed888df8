"""The read side's query functions: what the CLI and the API ask of the projections.

Every function takes a `ReadModel` (store + projection tables); when it was opened with
`catch_up=True` (the embedded case) the projections first apply what the log has that they
have not seen, so an answer is never older than what the log showed readers at the call.
Unknown runs raise `RunNotFound`, bad arguments `InvalidQuery` (both `ProjectionError`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Connection, Table, and_, func, or_, select, true

from ledgerflow.events import Cursor, InvalidCursor
from ledgerflow.events.deployments import Deployment, DeploymentNotFound
from ledgerflow.events.liveness import LIVE_STATES, LiveRun, ProcessIdentity
from ledgerflow.events.states import STATE_NAMES, StateType
from ledgerflow.projections.deployments import deployment_of
from ledgerflow.projections.analytics import merge_histograms, percentile, period_start
from ledgerflow.projections.errors import InvalidQuery, RunNotFound
from ledgerflow.projections.models import (
    AnalyticsGroup,
    AnalyticsPeriod,
    AnalyticsReport,
    Artifact,
    FlowRun,
    FlowRunPage,
    LineageEdge,
    LineageGraph,
    LineageNode,
    LogPage,
    RunDetail,
    RunHistory,
    RunHistoryPeriod,
    RunSnapshot,
    TaskRun,
)
from ledgerflow.projections.periods import period_index, period_start as index_start
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.streams import (
    artifacts,
    flow_run_model,
    fold_as_of,
    log_lines,
    state_history,
    stream_events,
    task_run_model,
)

__all__ = [
    "WAITING_TO_START",
    "analytics",
    "due_flow_runs",
    "get_deployment",
    "get_run",
    "late_flow_runs",
    "get_task_run",
    "lineage",
    "list_deployments",
    "list_flow_runs",
    "live_flow_runs",
    "projection_cursor",
    "run_artifacts",
    "run_as_of",
    "run_history",
    "run_logs",
    "upcoming_runs",
]


MAX_PAGE = 500
MAX_PERIODS = 2000
GRAIN_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _encode_cursor(created: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created.isoformat(), key])).decode()


def _decode_cursor(value: str) -> tuple[datetime, str]:
    try:
        created, key = orjson.loads(base64.urlsafe_b64decode(value.encode()))
        return datetime.fromisoformat(created), str(key)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidQuery(f"{value!r} is not a page cursor; pass the next_cursor a page returned") from None


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidQuery(f"{name} must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidQuery(f"{name} {value.isoformat()} is out of range in UTC") from None


def _like_json(value: str) -> str:
    text = orjson.dumps(value).decode()
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_flow_runs(
    rm: ReadModel,
    *,
    flow_name: str | None = None,
    state: StateType | str | None = None,
    tags: Sequence[str] = (),
    deployment_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: Literal["newest", "oldest"] = "newest",
    limit: int = 50,
    cursor: str | None = None,
) -> FlowRunPage:
    """Flow runs created in [since, until) matching every filter given; `state` is a state
    type (`FAILED`) or name (`Cached`); a run matches `tags` when it has all of them."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if sort not in ("newest", "oldest"):
        raise InvalidQuery(f"sort must be 'newest' or 'oldest', not {sort!r}")
    rm.refresh()
    with rm.reading("runs") as (conn, tables):
        return _list_flow_runs(
            conn, tables["flow_runs"], flow_name=flow_name, state=state, tags=tags,
            deployment_id=deployment_id, since=since, until=until, newest=sort == "newest",
            limit=limit, cursor=cursor,
        )


def _run_conditions(
    runs: Table, *, flow_name: str | None, state: StateType | str | None, tags: Sequence[str],
    deployment_id: str | None, since: datetime | None, until: datetime | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flow_name is not None:
        conditions.append(runs.c.flow_name == flow_name)
    if state is not None:
        if isinstance(state, StateType) or state.upper() in StateType.__members__:
            conditions.append(runs.c.state_type == StateType(str(state).upper()).value)
        elif state in STATE_NAMES:
            conditions.append(runs.c.state_name == state)
        else:
            raise InvalidQuery(
                f"unknown state {state!r}: use a type ({', '.join(StateType)}) or a name "
                f"({', '.join(STATE_NAMES)})"
            )
    conditions.extend(runs.c.tags.like(_like_json(tag), escape="\\") for tag in tags)
    if deployment_id is not None:
        conditions.append(runs.c.deployment_id == deployment_id)
    if since is not None:
        conditions.append(runs.c.created >= _aware(since, "since"))
    if until is not None:
        conditions.append(runs.c.created < _aware(until, "until"))
    return conditions


def _list_flow_runs(
    conn: Connection, runs: Table, *, flow_name: str | None, state: StateType | str | None,
    tags: Sequence[str], deployment_id: str | None, since: datetime | None,
    until: datetime | None, newest: bool, limit: int, cursor: str | None,
) -> FlowRunPage:
    conditions = _run_conditions(
        runs, flow_name=flow_name, state=state, tags=tags, deployment_id=deployment_id, since=since, until=until,
    )
    if cursor is not None:
        created, key = _decode_cursor(cursor)
        if newest:
            conditions.append(or_(runs.c.created < created, and_(runs.c.created == created, runs.c.key < key)))
        else:
            conditions.append(or_(runs.c.created > created, and_(runs.c.created == created, runs.c.key > key)))
    order = (runs.c.created.desc(), runs.c.key.desc()) if newest else (runs.c.created, runs.c.key)
    query = select(runs).where(and_(true(), *conditions)).order_by(*order).limit(limit + 1)
    rows = [dict(row) for row in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return FlowRunPage(
        items=[flow_run_model(row) for row in rows],
        next_cursor=_encode_cursor(rows[-1]["created"], rows[-1]["key"]) if more else None,
    )


def run_history(
    rm: ReadModel,
    *,
    since: datetime,
    until: datetime | None = None,
    grain: Literal["minute", "hour", "day"] = "hour",
    flow_name: str | None = None,
    state: StateType | str | None = None,
    tags: Sequence[str] = (),
    deployment_id: str | None = None,
) -> RunHistory:
    """Flow runs created per period of `grain` (UTC) in [since, until), counted by their
    current state type, with the filters of `list_flow_runs`."""
    seconds = GRAIN_SECONDS.get(grain)
    if seconds is None:
        raise InvalidQuery(f"grain must be minute, hour or day, not {grain!r}")
    since = _aware(since, "since")
    until = _aware(until, "until") if until is not None else datetime.now(UTC)
    if since >= until:
        raise InvalidQuery("since must be before until")
    periods = (until - since).total_seconds() / seconds
    if periods > MAX_PERIODS:
        raise InvalidQuery(
            f"{periods:,.0f} periods of a {grain} is too many (at most {MAX_PERIODS}): use a coarser grain or a shorter range"
        )
    rm.refresh()
    with rm.reading("runs") as (conn, tables):
        runs = tables["flow_runs"]
        conditions = _run_conditions(
            runs, flow_name=flow_name, state=state, tags=tags, deployment_id=deployment_id, since=since, until=until,
        )
        index = period_index(runs.c.created, seconds).label("period")
        query = (
            select(index, runs.c.state_type, func.count().label("runs"))
            .where(*conditions)
            .group_by(index, runs.c.state_type)
        )
        counted = conn.execute(query).all()
    by_period: dict[int, dict[str, int]] = {}
    for period, state_type, count in counted:
        by_period.setdefault(int(period), {})[state_type or "NONE"] = int(count)
    return RunHistory(
        since=since, until=until, grain=grain,
        periods=[RunHistoryPeriod(start=index_start(p, seconds), counts=by_period[p]) for p in sorted(by_period)],
    )


def projection_cursor(rm: ReadModel, projection: str) -> str:
    """The log cursor projection `projection` reflects: a live view built from its tables goes
    on with the events after it (re-applying one it already reflects changes nothing)."""
    checkpoint = rm.runner.checkpoints().get(projection)
    if checkpoint is None:
        raise InvalidQuery(f"no projection named {projection!r}")
    return str(checkpoint.cursor)


def get_run(rm: ReadModel, flow_run_id: str) -> RunDetail:
    """A flow run with its task runs and the states it went through."""
    rm.refresh()
    with rm.reading("runs") as (conn, tables):
        flow_runs, task_runs = tables["flow_runs"], tables["task_runs"]
        row = conn.execute(select(flow_runs).where(flow_runs.c.key == flow_run_id)).mappings().first()
        if row is None:
            raise RunNotFound(flow_run_id)
        tasks = conn.execute(
            select(task_runs)
            .where(task_runs.c.flow_run_id == flow_run_id)
            .order_by(task_runs.c.created, task_runs.c.key)
        ).mappings().all()
        replays = conn.execute(
            select(flow_runs.c.key).where(flow_runs.c.replay_of == flow_run_id).order_by(flow_runs.c.created)
        ).scalars().all()
    return RunDetail(
        flow_run=flow_run_model(row),
        task_runs=[task_run_model(task) for task in tasks],
        states=state_history(list(stream_events(rm.store, flow_run_id))),
        replays=list(replays),
    )


def get_task_run(rm: ReadModel, task_run_id: str) -> TaskRun:
    """One task run, by its id."""
    rm.refresh()
    with rm.reading("runs") as (conn, tables):
        task_runs = tables["task_runs"]
        row = conn.execute(select(task_runs).where(task_runs.c.key == task_run_id)).mappings().first()
    if row is None:
        raise RunNotFound(task_run_id)
    return task_run_model(row)


WAITING_TO_START = ("Scheduled", "Late", "Resuming")
"""The states of requested runs an executor may claim (AwaitingRetry is a live engine's;
`Resuming` is a suspended run that was resumed)."""


def due_flow_runs(
    rm: ReadModel, *, pools: Sequence[str | None], now: datetime | None = None, limit: int = 100
) -> list[str]:
    """Ids of requested runs waiting to start whose time has come, soonest due first, in the
    given work pools (None: runs that name no pool). A deployment with a concurrency limit
    has only as many of its runs here as it has free slots (its earliest ones), so extra runs
    wait and then start in order; the executor's lease (events/deployments.py) is the guard."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    rm.refresh()
    moment = _aware(now, "now") if now is not None else datetime.now(UTC)
    limits = _concurrency_limits(rm)
    with rm.reading("runs") as (conn, tables):
        runs = tables["flow_runs"]
        named = [pool for pool in pools if pool is not None]
        in_pool: list[ColumnElement[bool]] = [runs.c.work_pool.in_(named)] if named else []
        if None in pools:
            in_pool.append(runs.c.work_pool.is_(None))
        waiting = and_(
            runs.c.state_type == StateType.SCHEDULED.value,
            runs.c.state_name.in_(WAITING_TO_START),
            runs.c.scheduled_time <= moment,
            or_(*in_pool) if in_pool else true(),
        )
        unlimited = or_(runs.c.deployment_id.is_(None), runs.c.deployment_id.not_in(list(limits))) if limits else true()
        query = (
            select(runs.c.key, runs.c.scheduled_time)
            .where(waiting, unlimited)
            .order_by(runs.c.scheduled_time, runs.c.key)
            .limit(limit)
        )
        found = [(row.scheduled_time, row.key) for row in conn.execute(query)]
        if limits:
            found += _limited_due(conn, runs, waiting, limits)
    return [key for _, key in sorted(found)[:limit]]


_HOLDING = (StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value, StateType.PAUSED.value)


def _concurrency_limits(rm: ReadModel) -> dict[str, int]:
    with rm.reading("deployments") as (conn, tables):
        table = tables["deployments"]
        rows = conn.execute(
            select(table.c.key, table.c.concurrency_limit).where(table.c.concurrency_limit.is_not(None))
        )
        return {row.key: int(row.concurrency_limit) for row in rows}


def _limited_due(conn: Connection, runs: Table, waiting: ColumnElement[bool], limits: dict[str, int]) -> list[tuple[Any, str]]:
    """The earliest due runs of each limited deployment, as many as it has free slots."""
    ids = list(limits)
    holding: dict[str, int] = {
        str(row[0]): int(row[1]) for row in conn.execute(
            select(runs.c.deployment_id, func.count()).where(runs.c.deployment_id.in_(ids), runs.c.state_type.in_(_HOLDING))
            .group_by(runs.c.deployment_id)
        )
    }
    rank = func.row_number().over(partition_by=runs.c.deployment_id, order_by=(runs.c.scheduled_time, runs.c.key))
    ranked = select(runs.c.key, runs.c.deployment_id, runs.c.scheduled_time, rank.label("rank")).where(
        waiting, runs.c.deployment_id.in_(ids)
    ).subquery()
    top = max(limits.values())
    found = []
    for row in conn.execute(select(ranked).where(ranked.c.rank <= top)):
        if row.rank <= limits[row.deployment_id] - holding.get(row.deployment_id, 0):
            found.append((row.scheduled_time, row.key))
    return found


def late_flow_runs(rm: ReadModel, *, before: datetime, limit: int = 500) -> list[tuple[str, datetime]]:
    """(id, scheduled time) of requested runs still `Scheduled` whose time was before `before`."""
    rm.refresh()
    moment = _aware(before, "before")
    with rm.reading("runs") as (conn, tables):
        runs = tables["flow_runs"]
        query = (
            select(runs.c.key, runs.c.scheduled_time)
            .where(runs.c.state_name == "Scheduled", runs.c.scheduled_time < moment)
            .order_by(runs.c.scheduled_time)
            .limit(limit)
        )
        return [(row.key, row.scheduled_time) for row in conn.execute(query)]


def live_flow_runs(rm: ReadModel) -> list[LiveRun]:
    """The flow runs `Running` or `Cancelling` whose process is recorded: those a liveness
    check looks at (one query on the state index)."""
    rm.refresh()
    with rm.reading("runs") as (conn, tables):
        runs = tables["flow_runs"]
        query = select(runs).where(runs.c.state_type.in_([state.value for state in LIVE_STATES]),
                                   runs.c.host.is_not(None))
        return [
            LiveRun(row.key, StateType(row.state_type), ProcessIdentity(row.host, row.pid, row.process_started),
                    row.heartbeat_seconds, row.last_heartbeat)
            for row in conn.execute(query)
        ]


def list_deployments(
    rm: ReadModel, *, flow_name: str | None = None, tags: Sequence[str] = (), paused: bool | None = None,
    limit: int = 200,
) -> list[Deployment]:
    """Live deployments, by name."""
    if not 1 <= limit <= 1000:
        raise InvalidQuery(f"limit must be between 1 and 1000, not {limit}")
    rm.refresh()
    with rm.reading("deployments") as (conn, tables):
        table = tables["deployments"]
        conditions: list[ColumnElement[bool]] = [table.c.deleted.is_(False)]
        if flow_name is not None:
            conditions.append(table.c.flow_name == flow_name)
        if paused is not None:
            conditions.append(table.c.paused.is_(paused))
        conditions.extend(table.c.tags.like(_like_json(tag), escape="\\") for tag in tags)
        rows = conn.execute(select(table).where(*conditions).order_by(table.c.name).limit(limit)).mappings().all()
    return [deployment_of(dict(row)) for row in rows]


def get_deployment(rm: ReadModel, ident: str) -> Deployment:
    """A live deployment by id or by name (`flow/deployment`); DeploymentNotFound otherwise."""
    rm.refresh()
    with rm.reading("deployments") as (conn, tables):
        table = tables["deployments"]
        column = table.c.name if "/" in ident else table.c.key
        row = conn.execute(select(table).where(column == ident, table.c.deleted.is_(False))).mappings().first()
    if row is None:
        raise DeploymentNotFound(ident)
    return deployment_of(dict(row))


def upcoming_runs(rm: ReadModel, deployment_id: str, *, limit: int = 10) -> list[FlowRun]:
    """The deployment's runs waiting to start, soonest first."""
    rm.refresh()
    with rm.reading("runs") as (conn, tables):
        runs = tables["flow_runs"]
        rows = conn.execute(
            select(runs).where(
                runs.c.deployment_id == deployment_id, runs.c.state_type == StateType.SCHEDULED.value,
                runs.c.state_name.in_(WAITING_TO_START),
            ).order_by(runs.c.scheduled_time, runs.c.key).limit(limit)
        ).mappings().all()
    return [flow_run_model(dict(row)) for row in rows]


def run_logs(
    rm: ReadModel,
    flow_run_id: str,
    *,
    min_level: int = 0,
    task_run_id: str | None = None,
    after: int | None = None,
    limit: int = 200,
) -> LogPage:
    """Log lines of a run at `min_level` or above, oldest first, after stream position `after`.
    `next_after` is where the next page starts (the position read up to)."""
    if not 1 <= limit <= 5000:
        raise InvalidQuery(f"limit must be between 1 and 5000, not {limit}")
    if after is not None and after < 0:
        raise InvalidQuery(f"after must be a stream position >= 0, not {after}")
    lines, position = log_lines(
        rm.store, flow_run_id, min_level=min_level, task_run_id=task_run_id,
        after=after or 0, limit=limit,
    )
    return LogPage(items=lines, next_after=position)


def run_artifacts(rm: ReadModel, flow_run_id: str) -> list[Artifact]:
    """Artifacts of a run, with updates folded in, in creation order."""
    return artifacts(list(stream_events(rm.store, flow_run_id)))


def lineage(
    rm: ReadModel,
    run_id: str,
    *,
    direction: Literal["upstream", "downstream", "both"] = "both",
    depth: int = 3,
) -> LineageGraph:
    """The lineage graph around a flow run or task run, `depth` hops out. A flow run's own
    task runs count as one hop below it."""
    if direction not in ("upstream", "downstream", "both"):
        raise InvalidQuery(f"direction must be upstream, downstream or both, not {direction!r}")
    if not 0 <= depth <= 20:
        raise InvalidQuery(f"depth must be between 0 and 20, not {depth}")
    rm.refresh()
    with rm.reading("lineage") as (conn, tables):
        nodes_t, edges_t = tables["nodes"], tables["edges"]
        root = conn.execute(select(nodes_t).where(nodes_t.c.key == run_id)).first()
        if root is None:
            raise RunNotFound(run_id)
        found: dict[str, tuple[Any, int]] = {run_id: (root, 0)}
        edges: dict[str, Any] = {}
        frontier = [run_id]
        for hop in range(1, depth + 1):
            if not frontier:
                break
            reached: set[str] = set()
            sides = []
            if direction in ("downstream", "both"):
                sides.append((edges_t.c.source, "target"))
            if direction in ("upstream", "both"):
                sides.append((edges_t.c.target, "source"))
            for column, other in sides:
                for edge in conn.execute(select(edges_t).where(column.in_(frontier))):
                    edges[edge.key] = edge
                    reached.add(getattr(edge, other))
            flows = [key for key in frontier if found[key][0].kind == "flow_run"]
            members = conn.execute(select(nodes_t).where(nodes_t.c.flow_run_id.in_(flows))).all() if flows else []
            for member in members:
                if member.key not in found:
                    found[member.key] = (member, hop)
            for edge in conn.execute(
                select(edges_t).where(
                    edges_t.c.source.in_([m.key for m in members]),
                    edges_t.c.target.in_([m.key for m in members]),
                )
            ) if members else ():
                edges[edge.key] = edge
            new = reached - found.keys()
            for node in conn.execute(select(nodes_t).where(nodes_t.c.key.in_(list(new)))) if new else ():
                found[node.key] = (node, hop)
            frontier = [key for key in new if key in found] + [m.key for m in members]
    return LineageGraph(
        root=run_id,
        nodes=[
            LineageNode(id=key, kind=node.kind, name=node.name, flow_run_id=node.flow_run_id, depth=hops)
            for key, (node, hops) in sorted(found.items(), key=lambda item: (item[1][1], item[0]))
        ],
        edges=[
            LineageEdge(source=edge.source, target=edge.target, kind=edge.kind)
            for edge in sorted(edges.values(), key=lambda e: e.key)
            if edge.source in found and edge.target in found
        ],
    )


def analytics(
    rm: ReadModel,
    *,
    since: datetime,
    until: datetime | None = None,
    grain: Literal["hour", "day"] = "day",
    dimension: Literal["flow", "deployment", "tag", "task"] = "flow",
    value: str | None = None,
) -> AnalyticsReport:
    """Run counts, success rate and duration percentiles per `dimension` value over the
    periods (of `grain`) that overlap [since, until)."""
    if grain not in ("hour", "day"):
        raise InvalidQuery(f"grain must be 'hour' or 'day', not {grain!r}")
    if dimension not in ("flow", "deployment", "tag", "task"):
        raise InvalidQuery(f"dimension must be flow, deployment, tag or task, not {dimension!r}")
    since = _aware(since, "since")
    until = _aware(until, "until") if until is not None else datetime.now(UTC)
    if since >= until:
        raise InvalidQuery("since must be before until")
    rm.refresh()
    with rm.reading("analytics") as (conn, tables):
        buckets = tables["buckets"]
        conditions = [
            buckets.c.dimension == dimension,
            buckets.c.grain == grain,
            buckets.c.period >= period_start(since, grain),
            buckets.c.period < until,
        ]
        if value is not None:
            conditions.append(buckets.c.value == value)
        rows = conn.execute(
            select(buckets).where(*conditions).order_by(buckets.c.value, buckets.c.period)
        ).all()
    by_value: dict[str, list[Any]] = {}
    for row in rows:
        by_value.setdefault(row.value, []).append(row)
    groups = []
    for name, periods in by_value.items():
        totals = {f: sum(getattr(p, f) for p in periods) for f in ("runs", "completed", "failed", "crashed", "cancelled")}
        histogram = merge_histograms(orjson.loads(p.hist) for p in periods)
        maxima = [p.max_duration for p in periods if p.max_duration is not None]
        top = max(maxima) if maxima else None
        finished = totals["completed"] + totals["failed"] + totals["crashed"]
        groups.append(AnalyticsGroup(
            dimension=dimension, value=name, **totals,
            success_rate=totals["completed"] / finished if finished else None,
            p50=percentile(histogram, 50, top), p95=percentile(histogram, 95, top), max=top,
            periods=[_period(p) for p in periods],
        ))
    groups.sort(key=lambda g: (-g.runs, g.value))
    return AnalyticsReport(since=since, until=until, grain=grain, groups=groups)


def _period(row: Any) -> AnalyticsPeriod:
    finished = row.completed + row.failed + row.crashed
    histogram = merge_histograms([orjson.loads(row.hist)])
    return AnalyticsPeriod(
        start=row.period, runs=row.runs, completed=row.completed, failed=row.failed, crashed=row.crashed,
        cancelled=row.cancelled, success_rate=row.completed / finished if finished else None,
        p50=percentile(histogram, 50, row.max_duration), p95=percentile(histogram, 95, row.max_duration),
    )


def run_as_of(
    rm: ReadModel,
    flow_run_id: str,
    *,
    cursor: str | None = None,
    at: datetime | None = None,
) -> RunSnapshot:
    """A flow run and its task runs as of a log cursor or a time (exactly one of them)."""
    if (cursor is None) == (at is None):
        raise InvalidQuery("give exactly one of cursor and at")
    try:
        point = Cursor.parse(cursor) if cursor is not None else None
    except InvalidCursor as exc:
        raise InvalidQuery(str(exc)) from None
    when = _aware(at, "at") if at is not None else None
    count, flow_run, task_runs = fold_as_of(list(stream_events(rm.store, flow_run_id)), point, when)
    return RunSnapshot(
        as_of_cursor=cursor, as_of_time=when, events_folded=count, flow_run=flow_run, task_runs=task_runs,
    )
