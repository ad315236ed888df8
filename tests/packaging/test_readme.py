"""The README names only commands that exist: every `ledgerflow ...` it shows resolves in the CLI."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import typer

from ledgerflow.api.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
_WORD = r"[a-z][a-z-]*(?:\|[a-z][a-z-]*)*"
_SHOWN = re.compile(rf"(?:`|\$ )ledgerflow ({_WORD}(?: {_WORD})*)")


def shown_commands() -> set[tuple[str, ...]]:
    """Each command path the README shows, `a|b` alternatives spelled out."""
    found: set[tuple[str, ...]] = set()
    for words in _SHOWN.findall(README.read_text()):
        found.update(itertools.product(*(word.split("|") for word in words.split())))
    return found


def resolves(path: tuple[str, ...]) -> bool:
    """Whether the words name a command (words after a command's own name are its arguments)."""
    command: Any = typer.main.get_command(app)
    for word in path:
        if not hasattr(command, "list_commands"):  # a command, not a group of them
            return True
        if word not in command.list_commands(typer.Context(command)):
            return False
        command = command.get_command(typer.Context(command), word)
    return True


def test_every_command_the_readme_shows_exists() -> None:
    shown = shown_commands()
    assert ("flow-run", "ls") in shown and ("deployment", "pause") in shown
    assert resolves(("flow-run", "ls", "anything")) and not resolves(("flow-run", "nope")) and not resolves(("nope",))
    assert [" ".join(path) for path in sorted(shown) if not resolves(path)] == []
