"""The `ledgerflow` command line: one module per command group, the root in `main.py`.

`console` (output and `fail`), `context` (opening the configured store) and `client` (a
small client of the API server for commands run with `LEDGERFLOW_API_URL`) serve them all.
The console script is `ledgerflow.api.cli:main`.
"""

from ledgerflow.api.cli.main import app, main

__all__ = ["app", "main"]
