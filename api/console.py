"""Terminal output shared by the CLI commands: one rich Console, errors on stderr."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

__all__ = ["describe", "err", "fail", "out"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print a one-line error (and what to do next) and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"[dim]{hint}[/]")
    raise typer.Exit(code)


def describe(exc: Exception) -> str:
    """One line that says what was wrong with the input."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg'].removeprefix('Value error, ')}"
            if error["loc"]
            else error["msg"]
            for error in exc.errors()
        )
    return str(exc).splitlines()[0]
