"""ledgerflow: plain-Python flows and tasks whose every step lands in an immutable event log.

`from ledgerflow import flow, task` is the SDK (what `ledgerflow.runtime` exports). The
components live in sub-packages: `ledgerflow.events` (the log), `ledgerflow.runtime` (the
engine), `ledgerflow.projections` (read models), `ledgerflow.notifications` (automations) and
`ledgerflow.api` (the server and the command line).
"""

from typing import TYPE_CHECKING

from ledgerflow.runtime import *  # noqa: F403 - the SDK is the runtime's public surface
from ledgerflow.runtime import __all__ as _runtime_all

__all__ = [*_runtime_all, "get_client"]

if TYPE_CHECKING:
    from ledgerflow.client import LedgerflowClient, SyncLedgerflowClient, get_client


def __getattr__(name: str) -> object:
    # The client reads the projections: imported on first use, not with the SDK.
    if name in ("get_client", "LedgerflowClient", "SyncLedgerflowClient"):
        from ledgerflow import client

        return getattr(client, name)
    raise AttributeError(f"module 'ledgerflow' has no attribute {name!r}")
