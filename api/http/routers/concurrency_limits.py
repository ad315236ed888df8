"""`/api/concurrency-limits`: create (or resize), list, inspect and delete concurrency limits.

Writes go through the use cases of events/concurrency_limits.py; bad input gets a 4xx with one
readable line and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path

from ledgerflow.api.concurrency_limits import ConcurrencyLimitIn, ConcurrencyLimitOut, limit_out
from ledgerflow.api.http.deps import StoreDep, require
from ledgerflow.api.keys import Scope
from ledgerflow.events.concurrency_limits import LimitNotFound, create_limit, delete_limit, list_limits, read_limit

__all__ = ["router", "write_router"]

router = APIRouter(prefix="/api/concurrency-limits", tags=["concurrency limits"], dependencies=[Depends(require(Scope.READ))])
write_router = APIRouter(prefix="/api/concurrency-limits", tags=["concurrency limits"],
                         dependencies=[Depends(require(Scope.WRITE))])

LimitName = Annotated[str, Path(min_length=1, max_length=180, description="The limit's name (a tag or a global name)")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such concurrency limit"}}


@router.get("", response_model=list[ConcurrencyLimitOut])
def list_concurrency_limits(store: StoreDep) -> list[ConcurrencyLimitOut]:
    return [limit_out(state) for state in list_limits(store)]


@router.get("/{name}", response_model=ConcurrencyLimitOut, responses=_NOT_FOUND)
def get_concurrency_limit(store: StoreDep, name: LimitName) -> ConcurrencyLimitOut:
    state = read_limit(store, name)
    if not state.exists:
        raise HTTPException(404, str(LimitNotFound(name)))
    return limit_out(state)


@write_router.post("", response_model=ConcurrencyLimitOut)
def create_concurrency_limit(store: StoreDep, body: ConcurrencyLimitIn) -> ConcurrencyLimitOut:
    """Create the limit, or change its size and decay if it exists (its holders keep their slots)."""
    return limit_out(create_limit(store, body.name, body.limit, body.slot_decay_per_second, actor="api"))


@write_router.delete("/{name}", responses=_NOT_FOUND)
def delete_concurrency_limit(store: StoreDep, name: LimitName) -> dict[str, str]:
    try:
        delete_limit(store, name, actor="api")
    except LimitNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return {"deleted": name}
