"""A script that dies of an event-store or settings error prints one line, not a traceback.

The store's errors (an unreachable database, a bad `LEDGERFLOW_DATABASE_URL`, ...) and a
`LEDGERFLOW_*` variable that does not parse are the user's configuration to fix, and their
messages say how; `LEDGERFLOW_DEBUG=1` keeps Python's traceback. Installed when the process
opens its runtime (its first flow run).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ledgerflow.events import EventStoreError, InvalidSettings

__all__ = ["install"]


def install(*, debug: bool) -> None:
    if debug or isinstance(sys.excepthook, _OneLine):
        return
    sys.excepthook = _OneLine(sys.excepthook)


_Hook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


class _OneLine:
    def __init__(self, previous: _Hook) -> None:
        self.previous = previous

    def __call__(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, (EventStoreError, InvalidSettings)):
            message = " ".join(str(exc).split())
            print(f"error: {message} (LEDGERFLOW_DEBUG=1 shows the traceback)", file=sys.stderr)
        else:
            self.previous(kind, exc, tb)
