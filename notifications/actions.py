"""Carrying out one recorded action (`action.triggered`): send its message through the
sender of its type, act on its flow run (replay, cancel) through `ledgerflow.events.runs`, or
request a deployment's run through `ledgerflow.events.deployments`.

Raises DeliveryError (retryable or not) or ActionRefused (never retried: no run to act on, the
replay limit reached, a block that does not exist); returns details to record on success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import aiohttp

from ledgerflow.events.deployments import DeploymentError, request_deployment_run
from ledgerflow.events.errors import ConcurrencyConflict
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import StoredEvent
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.runs import (
    RunLog,
    RunNotFound,
    RunStateConflict,
    cancel_flow_run,
    read_flow_run,
    replay_request,
    request_flow_run,
)
from ledgerflow.notifications.blocks import Block, SlackWebhook, SmtpServer, Webhook
from ledgerflow.notifications.errors import ActionRefused, BlockNotFound
from ledgerflow.notifications.mail import EmailNotifier
from ledgerflow.notifications.notifier import Notifier
from ledgerflow.notifications.slack import SlackNotifier
from ledgerflow.notifications.webhook import WebhookNotifier

__all__ = ["ActionRunner", "replay_depth", "replay_flow_run", "run_deployment"]

_BLOCK_TTL = 5.0
_MAX_CHAIN = 1000


class ActionRunner:
    def __init__(self, log: RunLog, blocks: Callable[[str], Block], session: aiohttp.ClientSession) -> None:
        self._log = log
        self._load_block = blocks
        self._session = session
        """The dispatcher's HTTP session (keep-alive connections shared by every HTTP sender)."""
        self._blocks: dict[str, tuple[float, Block]] = {}

    async def run(self, action: StoredEvent) -> dict[str, Any]:
        data = action.data
        if data.get("render_error"):
            raise ActionRefused(str(data["render_error"]))
        kind = data.get("action_type")
        message: dict[str, Any] = data.get("message") or {}
        key = str(action.id)
        actor = f"automation:{data.get('automation_name')}"
        if kind in ("slack", "email", "webhook"):
            return await self._notifier(kind, str(data.get("block"))).send(message, key)
        if kind == "run-deployment":
            run = await asyncio.to_thread(
                run_deployment, self._log, str(message.get("deployment")), message.get("parameters") or {},
                flow_run_id=derived_id("run-deployment", key), actor=actor,
            )
            return {"flow_run_id": run}
        run_id = message.get("flow_run_id")
        if not run_id:
            raise ActionRefused(f"{kind}: the triggering event belongs to no flow run")
        if kind == "replay-flow-run":
            replay_id = derived_id("replay-flow-run", data.get("automation_id"), data.get("triggering_event_id"))
            replay = await asyncio.to_thread(
                replay_flow_run, self._log, str(run_id), replay_id=replay_id,
                max_replays=int(message.get("max_replays", 1)), actor=actor,
            )
            return {"replay_flow_run_id": replay}
        if kind == "cancel-flow-run":
            try:
                stored = await asyncio.to_thread(cancel_flow_run, self._log, str(run_id), message.get("message"), actor)
            except (RunNotFound, RunStateConflict) as exc:
                raise ActionRefused(str(exc)) from None
            return {"state": stored.type.partition(".")[2]}
        raise ActionRefused(f"unknown action type {kind!r}")

    def _notifier(self, kind: str, name: str) -> Notifier:
        block = self._block(name)
        if kind == "slack" and isinstance(block, SlackWebhook):
            return SlackNotifier(block, self._session)
        if kind == "email" and isinstance(block, SmtpServer):
            return EmailNotifier(block)
        if kind == "webhook" and isinstance(block, Webhook):
            return WebhookNotifier(block, self._session)
        raise ActionRefused(f"block {name!r} is a {block.block_type} block: a {kind} action needs another type")

    def _block(self, name: str) -> Block:
        cached = self._blocks.get(name)
        if cached is not None and time.monotonic() - cached[0] < _BLOCK_TTL:
            return cached[1]
        try:
            block = self._load_block(name)
        except BlockNotFound as exc:
            raise ActionRefused(str(exc)) from None
        self._blocks[name] = (time.monotonic(), block)
        return block


def replay_depth(log: RunLog, flow_run_id: str) -> tuple[int, str]:
    """How many replays deep `flow_run_id` is (0: an original) and the original's id, following
    the `replay_of` links of the runs' `flow-run.created` events."""
    depth, current = 0, flow_run_id
    for _ in range(_MAX_CHAIN):
        history = read_flow_run(log, current)
        parent = history.created.get("replay_of")
        if not parent:
            return depth, current
        depth, current = depth + 1, str(parent)
    return depth, current


def replay_flow_run(log: RunLog, flow_run_id: str, *, replay_id: UUID, max_replays: int, actor: str) -> str:
    """Request a replay of `flow_run_id` as run `replay_id` (a new run with `replay_of` set and
    the original's entrypoint, working folder and parameters): asking twice requests it once.
    ActionRefused when it cannot be replayed or the chain of replays is long enough."""
    if log.read_stream(flow_run_stream(replay_id), limit=1):
        return str(replay_id)
    try:
        history = read_flow_run(log, flow_run_id)
        depth, original = replay_depth(log, flow_run_id)
    except RunNotFound as exc:
        raise ActionRefused(str(exc)) from None
    if depth >= max_replays:
        raise ActionRefused(
            f"max_replays ({max_replays}) reached: run {flow_run_id} is replay {depth} of {original}"
        )
    created = history.created
    entrypoint = created.get("entrypoint")
    if not entrypoint:
        raise ActionRefused(f"flow run {flow_run_id} records no entrypoint: it cannot be replayed")
    try:
        request_flow_run(
            log, **replay_request(created, flow_run_id, replay_options={"from_task": None, "no_reuse": []}),
            flow_run_id=replay_id, actor=actor,
        )
    except ConcurrencyConflict:
        pass  # requested meanwhile by another attempt: the run exists, which is all we want
    return str(replay_id)


def run_deployment(
    log: RunLog, deployment: str, parameters: dict[str, Any], *, flow_run_id: UUID, actor: str,
) -> str:
    """Request a run of `deployment` as run `flow_run_id`: asking twice requests it once.
    ActionRefused when the deployment does not exist or refuses the parameters."""
    if log.read_stream(flow_run_stream(flow_run_id), limit=1):
        return str(flow_run_id)
    try:
        request_deployment_run(log, deployment, parameters=parameters, flow_run_id=flow_run_id, actor=actor)
    except DeploymentError as exc:
        raise ActionRefused(f"run-deployment: {exc}") from None
    except ConcurrencyConflict:
        pass  # requested meanwhile by another attempt
    return str(flow_run_id)
