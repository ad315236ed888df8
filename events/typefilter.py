"""Event type filters: exact names and `*` wildcards (`task-run.*`, `*.Failed`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["TypePatterns"]


class TypePatterns(NamedTuple):
    exact: frozenset[str]
    likes: tuple[str, ...]
    regex: re.Pattern[str] | None

    @classmethod
    def parse(cls, patterns: Sequence[str] | None) -> TypePatterns:
        """None or an empty list means every type."""
        if not patterns:
            return ALL
        if isinstance(patterns, str):
            patterns = [patterns]
        exact = frozenset(p for p in patterns if "*" not in p)
        wild = tuple(p for p in patterns if "*" in p)
        likes = tuple(_like(p) for p in wild)
        regex = re.compile("|".join(_regex(p) for p in patterns))
        return cls(exact, likes, regex)

    def __bool__(self) -> bool:
        return self.regex is not None

    def matches(self, event_type: str) -> bool:
        return self.regex is None or self.regex.fullmatch(event_type) is not None


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _regex(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


ALL = TypePatterns(frozenset(), (), None)
