"""`/api/events/verify` and `/api/projections`: what `ledgerflow events verify` and
`ledgerflow projections status` report, over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ledgerflow.api.http.deps import ReadModelDep, StoreDep, require
from ledgerflow.api.keys import Scope

__all__ = ["router"]

router = APIRouter(tags=["operations"], dependencies=[Depends(require(Scope.READ))])


class ChainBreak(BaseModel):
    stream: str
    stream_position: int
    reason: str


class Verification(BaseModel):
    intact: bool
    events_checked: int
    streams_checked: int
    first_break: ChainBreak | None
    damage: list[str] = []
    """What the database's own checks found wrong (SQLite's integrity check, unreadable tables, ...)."""


@router.get("/api/events/verify", response_model=Verification)
def verify(store: StoreDep) -> Verification:
    """Check the database itself, then walk every stream's hash chain and report the first
    broken link (reads the whole log)."""
    report = store.verify()
    broken = report.first_break
    return Verification(
        intact=report.intact, events_checked=report.events_checked, streams_checked=report.streams_checked,
        first_break=ChainBreak(**broken._asdict()) if broken is not None else None, damage=list(report.damage),
    )


class ProjectionStatus(BaseModel):
    name: str
    generation: int
    version: int
    checkpoint: str
    building_generation: int | None


class ProjectionsStatus(BaseModel):
    head: str
    projections: list[ProjectionStatus]


@router.get("/api/projections", response_model=ProjectionsStatus)
def projections_status(store: StoreDep, rm: ReadModelDep) -> ProjectionsStatus:
    """Each projection's generation, version and checkpoint, and the log's head."""
    return ProjectionsStatus(head=store.head(), projections=[
        ProjectionStatus(name=name, generation=c.generation, version=c.version, checkpoint=str(c.cursor),
                         building_generation=c.building_generation)
        for name, c in rm.runner.checkpoints().items()
    ])
