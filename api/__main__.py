"""`python -m ledgerflow.api ...` is the `ledgerflow` command."""

from ledgerflow.api.cli import main

main()
