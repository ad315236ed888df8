"""Automations as events: creating, changing, enabling, disabling and deleting one appends to
its stream `automation-<id>`; the current set is the fold of those events.

    automation.created   {automation: <the whole definition>}
    automation.updated   {automation: <the whole new definition>}
    automation.enabled / automation.disabled / automation.deleted   {automation_id, name}

Names are unique. A name is claimed in a stream of its own (`automation-name-<uuid5 of the
name>`: `automation.name-claimed`, `automation.name-released`), appended with the version that
was read, in the same transaction as the definition event: two processes creating the same
name at once cannot both succeed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from ledgerflow.events.errors import ConcurrencyConflict
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import ANY, NO_STREAM, EventMeta, NewEvent, StoredEvent, StreamAppend, new_id, utcnow
from ledgerflow.events.store import EventStore
from ledgerflow.notifications.errors import AutomationExists, AutomationNotFound, describe_validation
from ledgerflow.notifications.firing import automation_stream
from ledgerflow.notifications.model import Automation, AutomationSpec

__all__ = ["DEFINITION_TYPES", "Automations", "apply_definition", "fold_definitions", "name_stream"]

DEFINITION_TYPES = (
    "automation.created",
    "automation.updated",
    "automation.enabled",
    "automation.disabled",
    "automation.deleted",
)
_ATTEMPTS = 10
_log = logging.getLogger("ledgerflow.notifications")


def name_stream(name: str) -> str:
    return f"automation-name-{derived_id('automation-name', name)}"


def apply_definition(current: dict[UUID, Automation], event: StoredEvent) -> Automation | UUID | None:
    """Fold one definition event into `current`; return the automation it leaves (or the id of
    the one it deleted), None for other events."""
    data = event.data
    if event.type in ("automation.created", "automation.updated"):
        raw = dict(data["automation"])
        previous = current.get(UUID(raw["id"]))
        if previous is not None and event.type == "automation.updated":
            raw["created"] = previous.created.isoformat()
        raw["updated"] = event.occurred.isoformat()
        try:
            automation = Automation.model_validate(raw)
        except ValidationError as exc:  # written by another version's rules: skip, do not stop the fold
            _log.warning("automation %s at %s is not valid here and is ignored: %s", raw.get("name"), event.cursor,
                         describe_validation(exc))
            return None
        current[automation.id] = automation
        return automation
    if event.type in ("automation.enabled", "automation.disabled"):
        automation_id = UUID(data["automation_id"])
        found = current.get(automation_id)
        if found is None:
            return None
        changed = found.model_copy(update={"enabled": event.type == "automation.enabled", "updated": event.occurred})
        current[automation_id] = changed
        return changed
    if event.type == "automation.deleted":
        automation_id = UUID(data["automation_id"])
        current.pop(automation_id, None)
        return automation_id
    return None


def fold_definitions(events: Iterable[StoredEvent]) -> dict[UUID, Automation]:
    current: dict[UUID, Automation] = {}
    for event in events:
        apply_definition(current, event)
    return current


class Automations:
    """The automation use cases over an event store (or anything with its read and append)."""

    def __init__(self, store: EventStore, actor: str | None = None) -> None:
        self.store = store
        self.actor = actor

    # -- reading ---------------------------------------------------------------------------

    def all(self) -> list[Automation]:
        """Every automation, by name (from the log's feed: on PostgreSQL an automation written
        a moment ago may show a moment later)."""
        current = fold_definitions(self.store.iter_all(types=list(DEFINITION_TYPES)))
        return sorted(current.values(), key=lambda a: a.name)

    def get(self, name_or_id: str | UUID) -> Automation:
        """One automation, read from its own streams: what this process just wrote is there
        (the type-filtered feed `all` reads may lag a moment behind on PostgreSQL)."""
        key = str(name_or_id)
        automation_id = self._resolve(key)
        if automation_id is not None:
            current: dict[UUID, Automation] = {}
            for event in self.store.read_stream(automation_stream(automation_id)):
                if event.type in DEFINITION_TYPES:
                    apply_definition(current, event)
            found = current.get(automation_id)
            if found is not None and (found.name == key or str(found.id) == key):
                return found
        raise AutomationNotFound(f"no automation named {key!r}")

    def _resolve(self, key: str) -> UUID | None:
        try:
            return UUID(key)
        except ValueError:
            pass
        claims = self.store.read_stream(name_stream(key))
        if claims and claims[-1].type == "automation.name-claimed":
            return UUID(claims[-1].data["automation_id"])
        return None

    def history(self, automation: Automation, limit: int = 50) -> list[StoredEvent]:
        """The newest `limit` firings and outcomes of `automation` (oldest first)."""
        kinds = ("automation.triggered", "action.triggered", "action.succeeded", "action.failed")
        stream = self.store.read_stream(automation_stream(automation.id))
        return [e for e in stream if e.type in kinds][-limit:]

    # -- changing --------------------------------------------------------------------------

    def create(self, spec: AutomationSpec) -> Automation:
        """A new automation; AutomationExists if the name is taken."""
        now = utcnow()
        automation = Automation(**spec.model_dump(), id=new_id(), created=now, updated=now)
        created = self._event("automation.created", {"automation": _definition(automation)}, now)
        self._claim(spec.name, automation.id, [StreamAppend(automation_stream(automation.id), [created], NO_STREAM)])
        return automation

    def update(self, name_or_id: str | UUID, spec: AutomationSpec) -> Automation:
        """Replace an automation's definition (its name too; the new name must be free)."""
        old = self.get(name_or_id)
        automation = Automation(**spec.model_dump(), id=old.id, created=old.created, updated=utcnow())
        event = self._event("automation.updated", {"automation": _definition(automation)})
        change = StreamAppend(automation_stream(old.id), [event], ANY)
        if spec.name == old.name:
            self.store.append_streams([change])
        else:
            self._claim(spec.name, old.id, [change, self._release(old)])
        return self.get(old.id)

    def enable(self, name_or_id: str | UUID) -> Automation:
        return self._toggle(name_or_id, "automation.enabled")

    def disable(self, name_or_id: str | UUID) -> Automation:
        return self._toggle(name_or_id, "automation.disabled")

    def delete(self, name_or_id: str | UUID) -> Automation:
        found = self.get(name_or_id)
        deleted = self._event("automation.deleted", {"automation_id": str(found.id), "name": found.name})
        self.store.append_streams([StreamAppend(automation_stream(found.id), [deleted], ANY), self._release(found)])
        return found

    def _toggle(self, name_or_id: str | UUID, kind: str) -> Automation:
        found = self.get(name_or_id)
        event = self._event(kind, {"automation_id": str(found.id), "name": found.name})
        self.store.append(automation_stream(found.id), [event])
        return self.get(found.id)

    def _event(self, kind: str, data: dict[str, Any], occurred: datetime | None = None) -> NewEvent:
        return NewEvent(type=kind, data=data, meta=EventMeta(actor=self.actor), occurred=occurred or utcnow())

    def _claim(self, name: str, automation_id: UUID, appends: Sequence[StreamAppend]) -> None:
        stream = name_stream(name)
        for _ in range(_ATTEMPTS):
            claims = self.store.read_stream(stream)
            if claims and claims[-1].type == "automation.name-claimed":
                raise AutomationExists(f"an automation named {name!r} exists")
            claim = self._event("automation.name-claimed", {"name": name, "automation_id": str(automation_id)})
            expected = claims[-1].stream_position if claims else NO_STREAM
            try:
                self.store.append_streams([StreamAppend(stream, [claim], expected), *appends])
                return
            except ConcurrencyConflict:
                continue  # someone claimed or released it meanwhile: look again
        raise AutomationExists(f"the name {name!r} kept changing hands; try again")

    def _release(self, automation: Automation) -> StreamAppend:
        released = self._event("automation.name-released", {"name": automation.name, "automation_id": str(automation.id)})
        return StreamAppend(name_stream(automation.name), [released], ANY)


def _definition(automation: Automation) -> dict[str, Any]:
    return automation.model_dump(mode="json", exclude={"created", "updated"}) | {
        "created": automation.created.isoformat(), "updated": automation.updated.isoformat(),
    }
