"""CLI tables fit the terminal: whole header words, every column kept, cells wrapped inside their column."""

from __future__ import annotations

import io

from hypothesis import assume, given
from hypothesis import strategies as st
from rich.console import Console

from ledgerflow.api.cli.console import table

header_word = st.from_regex(r"[A-Z]{1,9}", fullmatch=True)
headers = st.lists(st.lists(header_word, min_size=1, max_size=2).map(" ".join), min_size=1, max_size=7, unique=True)
cell = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="[]\\"), max_size=60)


@given(columns=headers, rows=st.data(), width=st.integers(60, 120))
def test_tables_fit_and_keep_their_headers_whole(columns: list[str], rows: st.DataObject, width: int) -> None:
    assume(sum(max(map(len, column.split())) for column in columns) + 2 * (len(columns) - 1) <= width)  # headers fit
    made = table(*columns)
    for _ in range(rows.draw(st.integers(1, 4))):
        made.add_row(*rows.draw(st.lists(cell, min_size=len(columns), max_size=len(columns))))
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(made)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    header_words = lines[0].split() + (lines[1].split() if len(lines) > 1 else [])
    for column in columns:  # a two-word header may wrap between its words, never inside one
        for word in column.split():
            assert word in header_words, (column, lines[:2])
