"""ledgerflow: plain-Python flows and tasks whose every step lands in an immutable event log.

`from ledgerflow import flow, task` is the SDK (what `ledgerflow.runtime` exports). The
components live in sub-packages: `ledgerflow.events` (the log), `ledgerflow.runtime` (the
engine), `ledgerflow.projections` (read models), `ledgerflow.notifications` (automations) and
`ledgerflow.api` (the server and the command line).
"""

from ledgerflow.runtime import *  # noqa: F403 - the SDK is the runtime's public surface
from ledgerflow.runtime import __all__ as __all__
