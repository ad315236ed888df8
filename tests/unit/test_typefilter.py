"""Event type filters: exact names and `*` wildcards, with `%` and `_` meaning themselves."""

from __future__ import annotations

import fnmatch

from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.events.typefilter import TypePatterns


def test_wildcards_at_either_end_and_in_the_middle() -> None:
    patterns = TypePatterns.parse(["task-run.*", "*.Failed", "flow-*.Crashed"])
    assert patterns.matches("task-run.Running") and patterns.matches("task-run.")
    assert patterns.matches("flow-run.Failed") and patterns.matches(".Failed")
    assert patterns.matches("flow-run.Crashed")
    assert not patterns.matches("task-runs.x") and not patterns.matches("flow-run.FailedX")
    assert not patterns.matches("xtask-run.Running") and not patterns.matches("task-run")


def test_exact_names_and_like_patterns_are_split() -> None:
    patterns = TypePatterns.parse(["log.emitted", "task-run.*", "*.Failed"])
    assert patterns.exact == frozenset({"log.emitted"})
    assert patterns.likes == ("task-run.%", "%.Failed")
    assert patterns.matches("log.emitted") and not patterns.matches("log.emittedX")


def test_percent_underscore_and_backslash_are_literal() -> None:
    assert TypePatterns.parse(["50%"]).exact == frozenset({"50%"})
    assert TypePatterns.parse(["a_*"]).likes == ("a\\_%",)
    assert TypePatterns.parse(["a%*"]).likes == ("a\\%%",)
    assert TypePatterns.parse(["a\\*"]).likes == ("a\\\\%",)
    underscore = TypePatterns.parse(["task_run.*"])
    assert underscore.matches("task_run.x") and not underscore.matches("task-run.x")
    percent = TypePatterns.parse(["100%_x", "a%.*"])
    assert percent.matches("100%_x") and not percent.matches("100abx")
    assert percent.matches("a%.x") and not percent.matches("abc.x")


def test_regex_characters_are_literal() -> None:
    patterns = TypePatterns.parse(["a.b", "(x)+*"])
    assert patterns.matches("a.b") and not patterns.matches("aXb")
    assert patterns.matches("(x)+y") and not patterns.matches("xx")


def test_no_patterns_mean_every_type() -> None:
    nothing: list[str] | None
    for nothing in (None, []):
        patterns = TypePatterns.parse(nothing)
        assert not patterns
        assert patterns.matches("anything")
    assert TypePatterns.parse(["*"]).matches("anything")


def test_a_single_string_is_one_pattern() -> None:
    assert TypePatterns.parse("task-run.*") == TypePatterns.parse(["task-run.*"])


TYPE_CHARS = "ab.-_%"


@given(
    st.lists(st.text(alphabet=TYPE_CHARS + "*", min_size=1, max_size=6), min_size=1, max_size=3),
    st.text(alphabet=TYPE_CHARS, max_size=8),
)
def test_matching_agrees_with_a_glob_reference(patterns: list[str], event_type: str) -> None:
    expected = any(fnmatch.fnmatchcase(event_type, p) for p in patterns)  # no ? or [ in the alphabet
    assert TypePatterns.parse(patterns).matches(event_type) == expected
