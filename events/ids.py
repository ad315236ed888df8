"""Deterministic event ids: the id of a reaction derives from what caused it.

A consumer that reacts to an event (an automation firing, a schedule slot, a crash verdict, a
retried delivery) appends its reaction with `derived_id(...)` of the cause. Handling the cause
twice (at-least-once delivery, two processes, a restart) then appends the same id twice, and the
store's duplicate-id rule writes it once.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

__all__ = ["LEDGERFLOW_NAMESPACE", "derived_id"]

LEDGERFLOW_NAMESPACE = UUID("6f1c3f2e-5b8a-4c1e-9a57-2d0c7e4b9a10")
_NAMESPACE_BYTES = LEDGERFLOW_NAMESPACE.bytes


def derived_id(*parts: object) -> UUID:
    """A UUIDv5 of `parts` (joined with a separator no part contains unescaped): the same parts
    give the same id in every process, different parts a different id."""
    if not parts:
        raise ValueError("derived_id needs at least one part")
    texts = [str(part) for part in parts]
    name = "\x1f".join(texts)
    if "\\" in name or name.count("\x1f") != len(texts) - 1:  # escape only when a part needs it
        name = "\x1f".join(text.replace("\\", "\\\\").replace("\x1f", "\\x1f") for text in texts)
    # uuid.uuid5, without its per-call overheads (a scheduler derives three ids per slot).
    return UUID(bytes=hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16], version=5)
