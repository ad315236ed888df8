"""Terminal output shared by the CLI commands: one rich Console, errors on stderr."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console, ConsoleOptions
from rich.markup import escape
from rich.table import Table

__all__ = ["describe", "err", "fail", "out", "table"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 1000  # piped into grep or a file: one line per row, nothing cut to 80 columns


def table(
    *columns: str, title: str | None = None, right: Collection[str] = (), no_wrap: Collection[str] = (),
    min_widths: Mapping[str, int] | None = None,
) -> Table:
    """A borderless table whose long cells fold onto more lines in a narrow terminal, never cut;
    a header may wrap between its words, never inside one."""
    made = _FittingTable(box=None, header_style="bold", title=title, title_justify="left", pad_edge=False)
    for column in columns:
        made.add_column(
            column, overflow="fold", no_wrap=column in no_wrap, justify="right" if column in right else "left",
            min_width=max((min_widths or {}).get(column, 0), *map(len, column.split())),
        )
    return made


class _FittingTable(Table):
    """A table that, when the terminal is too narrow, keeps every column at least its
    `min_width` wide: rich's last resort shrinks all columns evenly and drops narrow ones."""

    def _calculate_column_widths(self, console: Console, options: ConsoleOptions) -> list[int]:
        widths = super()._calculate_column_widths(console, options)
        floors = [(column.min_width or 0) + self._get_padding_width(index) for index, column in enumerate(self.columns)]
        widths = [max(width, floor) for width, floor in zip(widths, floors)]
        budget = options.max_width - self._extra_width
        while sum(widths) > budget:
            richest = max(range(len(widths)), key=lambda index: widths[index] - floors[index])
            if widths[richest] <= floors[richest]:
                break  # even the floors do not fit: the terminal wraps the lines
            widths[richest] -= 1
        return widths


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print a one-line error (and what to do next) and exit non-zero."""
    err.print(f"[bold red]error:[/] {escape(message)}" + (f" [dim]({escape(hint)})[/]" if hint else ""))
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
