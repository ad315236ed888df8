"""`/api/automations` (rules: CRUD, enable/disable, firings, backtest) and `/api/blocks`
(credentials: created, listed masked, deleted, and used by flow code to notify through the server).

A block's secret never leaves the server: every answer shows it masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.api.http.deps import StateDep, StoreDep, require
from ledgerflow.api.http.schemas import EventOut, event_json
from ledgerflow.api.keys import Scope
from ledgerflow.notifications.backtest import BacktestFiring, backtest_log
from ledgerflow.notifications.blocks import BlockInfo, SlackWebhook, parse_block
from ledgerflow.notifications.definitions import Automations
from ledgerflow.notifications.errors import BlockError
from ledgerflow.notifications.model import Automation, AutomationSpec

__all__ = ["automations_read", "automations_write", "blocks_admin", "blocks_read", "blocks_write"]

automations_read = APIRouter(prefix="/api/automations", tags=["automations"], dependencies=[Depends(require(Scope.READ))])
automations_write = APIRouter(prefix="/api/automations", tags=["automations"], dependencies=[Depends(require(Scope.WRITE))])
blocks_read = APIRouter(prefix="/api/blocks", tags=["blocks"], dependencies=[Depends(require(Scope.READ))])
blocks_write = APIRouter(prefix="/api/blocks", tags=["blocks"], dependencies=[Depends(require(Scope.WRITE))])
blocks_admin = APIRouter(prefix="/api/blocks", tags=["blocks"], dependencies=[Depends(require(Scope.ADMIN))])

Name = Annotated[str, Path(min_length=1, max_length=200, description="The automation's name or id")]
BlockName = Annotated[str, Path(min_length=1, max_length=200)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such automation"}}


def _automations(store: StoreDep) -> Automations:
    return Automations(store, actor="api")


AutomationsDep = Annotated[Automations, Depends(_automations)]


@automations_read.get("", response_model=list[Automation])
def list_automations(automations: AutomationsDep) -> list[Automation]:
    """Every automation, by name."""
    return automations.all()


@automations_write.post("", response_model=Automation, status_code=201,
                        responses={409: {"description": "the name is taken"}})
def create_automation(automations: AutomationsDep, rule: AutomationSpec) -> Automation:
    """Create an automation from a rule (the shape of a rule file); a malformed rule is refused
    with a 422 naming the field."""
    return automations.create(rule)


@automations_read.get("/{name}", response_model=Automation, responses=_NOT_FOUND)
def get_automation(automations: AutomationsDep, name: Name) -> Automation:
    return automations.get(name)


@automations_read.get("/{name}/firings", response_model=list[EventOut], responses=_NOT_FOUND)
def automation_firings(
    automations: AutomationsDep, name: Name, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    """Its newest firings and action outcomes (`automation.triggered`, `action.*`), oldest first."""
    return [event_json(e) for e in automations.history(automations.get(name), limit)]


@automations_write.put("/{name}", response_model=Automation, responses={**_NOT_FOUND, 409: {"description": "the new name is taken"}})
def update_automation(automations: AutomationsDep, name: Name, rule: AutomationSpec) -> Automation:
    """Replace an automation's rule (its id and history stay)."""
    return automations.update(name, rule)


@automations_write.post("/{name}/enable", response_model=Automation, responses=_NOT_FOUND)
def enable_automation(automations: AutomationsDep, name: Name) -> Automation:
    return automations.enable(name)


@automations_write.post("/{name}/disable", response_model=Automation, responses=_NOT_FOUND)
def disable_automation(automations: AutomationsDep, name: Name) -> Automation:
    return automations.disable(name)


@automations_write.delete("/{name}", status_code=204, responses=_NOT_FOUND)
def delete_automation(automations: AutomationsDep, name: Name) -> Response:
    automations.delete(name)
    return Response(status_code=204)


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: AutomationSpec
    since: datetime | None = Field(default=None, description="Only events that occurred from then on (default: all)")
    until: datetime | None = Field(default=None, description="Up to then (default: now)")


class BacktestResult(BaseModel):
    firings: list[BacktestFiring]


@automations_read.post("/test", response_model=BacktestResult)
def test_automation(store: StoreDep, body: BacktestRequest) -> BacktestResult:
    """Run a rule over the stored events without sending anything: when it would have fired
    and what each message would have said."""
    return BacktestResult(firings=backtest_log(store, body.rule, since=body.since, until=body.until))


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    type: Literal["slack-webhook", "smtp", "webhook"]
    fields: dict[str, Any] = Field(description="slack-webhook: url; smtp: host, port, username, password, security "
                                               "(starttls|tls|none), from_address; webhook: url, secret, headers, method")


@blocks_read.get("", response_model=list[BlockInfo])
def list_blocks(state: StateDep) -> list[BlockInfo]:
    """Every block, its secrets masked."""
    return state.blocks.list()


@blocks_admin.post("", response_model=BlockInfo, status_code=201, responses={409: {"description": "the name is taken"}})
def create_block(state: StateDep, body: BlockIn) -> BlockInfo:
    """Store credentials, encrypted; the answer shows them masked."""
    return state.blocks.create(body.name, parse_block(body.type, body.fields))


@blocks_read.get("/{name}", response_model=BlockInfo, responses={404: {"description": "no such block"}})
def get_block(state: StateDep, name: BlockName) -> BlockInfo:
    return state.blocks.info(name)


@blocks_admin.delete("/{name}", status_code=204, responses={404: {"description": "no such block"}})
def delete_block(state: StateDep, name: BlockName) -> Response:
    state.blocks.delete(name)
    return Response(status_code=204)


class NotifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=40_000)
    blocks: list[dict[str, Any]] | None = Field(default=None, max_length=50)


@blocks_write.post("/{name}/notify", status_code=204,
                   responses={404: {"description": "no such block"}, 502: {"description": "Slack refused or was unreachable"}})
def notify(state: StateDep, name: BlockName, body: NotifyRequest) -> Response:
    """Send a message through a slack-webhook block: what `SlackWebhook.load(name).notify(text)`
    does in flow code when it talks to a server (the URL stays here)."""
    block = state.blocks.get(name)
    if not isinstance(block, SlackWebhook):
        raise BlockError(f"block {name!r} is a {block.block_type} block; notify needs a slack-webhook block")
    block.notify(body.text, body.blocks)
    return Response(status_code=204)


ROUTERS = (automations_read, automations_write, blocks_read, blocks_write, blocks_admin)
