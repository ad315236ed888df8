"""Bad input never gets a traceback: one line on stderr and a non-zero exit (issue 12 §6).

Hypothesis feeds random database URLs, JSON payloads and arguments to the CLI in-process
(typer's CliRunner: an error no command handled would be `result.exception`); a few real
processes check what a user's terminal shows, with and without `--debug`. Every test runs in
its own folder (cwd and LEDGERFLOW_HOME), so relative `sqlite:///` URLs leave nothing in the
repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from ledgerflow.api.cli import app
from ledgerflow.events import open_store

FUZZ = settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """cwd and LEDGERFLOW_HOME in the test's folder, no other LEDGERFLOW_* setting."""
    for name in list(os.environ):
        if name.startswith("LEDGERFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEDGERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def cli(*args: str, url: str | None = None) -> Result:
    env = {"LEDGERFLOW_DATABASE_URL": url} if url is not None else {}
    return CliRunner().invoke(app, list(args), env=env)


def assert_clean(result: Result, *, failed: bool) -> None:
    """No error escaped the root command; a failure is one `error:` line and a non-zero exit."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "this is a bug" not in result.output, result.output
    if failed:
        assert result.exit_code != 0, result.output
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    else:
        assert result.exit_code == 0, result.output


READ_COMMANDS = [["flow-run", "ls"], ["events", "tail"], ["events", "verify"], ["stats"], ["projections", "status"]]
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30)
host = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
bad_urls = st.one_of(
    st.builds(lambda scheme, rest: f"{scheme}://{rest}", st.sampled_from(["mysql", "oracle", "http", "mssql+pyodbc"]), text),
    st.builds(lambda word: f"sqlite:///{word}-missing/{word}/x.db", host),
    st.builds(lambda word: f"postgresql://user@{word}.invalid/db", host),
    text.filter(lambda t: "://" not in t and t.strip() != ""),
)


@FUZZ
@given(url=bad_urls, command=st.sampled_from(READ_COMMANDS))
def test_bad_database_urls_get_one_line(workdir: Path, url: str, command: list[str]) -> None:
    result = cli(*command, url=url)
    assert_clean(result, failed=True)
    assert "LEDGERFLOW_DATABASE_URL" in result.stderr or "database URL" in result.stderr
    assert not list(workdir.glob("*-missing")), "a missing folder was created"


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


not_json = text.filter(lambda t: not _parses(t))
not_an_object = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=3), st.text(max_size=5), st.none(),
).map(json.dumps)
too_deep = st.one_of(st.integers(300, 20_000).map(nested), st.integers(2_000, 20_000).map(lambda d: "[" * d + "]" * d))
huge_numbers = st.integers(2**64, 2**200).map(lambda n: json.dumps({"n": n}))


def _parses(candidate: str) -> bool:
    try:
        json.loads(candidate)
    except (ValueError, RecursionError):
        return False
    return True


@FUZZ
@given(data=st.one_of(not_json, not_an_object, too_deep, huge_numbers))
def test_bad_json_on_events_append_gets_one_line(workdir: Path, data: str) -> None:
    result = cli("events", "append", "--", "demo-1", "demo.happened", data)  # "--": "-1" is data, not an option
    assert_clean(result, failed=True)
    with open_store() as store:
        assert store.read_stream("demo-1") == []  # nothing half-written


@FUZZ
@given(stream=text, type_=text, data=st.dictionaries(st.text(max_size=5), st.integers(-5, 5), max_size=3))
def test_any_stream_and_type_is_appended_or_refused_in_one_line(
    workdir: Path, stream: str, type_: str, data: dict[str, int]
) -> None:
    result = cli("events", "append", "--", stream, type_, json.dumps(data))  # "--": a stream may start with "-"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "this is a bug" not in result.output, result.output
    if result.exit_code != 0:
        assert_clean(result, failed=True)


times = st.one_of(text, st.from_regex(r"-?[0-9]{1,25}[smhdwy]?", fullmatch=True), st.just("9999-99-99"))


@FUZZ
@given(since=times.filter(lambda t: t != "" and not _is_time(t)), command=st.sampled_from([["flow-run", "ls"], ["stats"]]))
def test_bad_times_get_one_line(workdir: Path, since: str, command: list[str]) -> None:
    result = cli(*command, "--since", since)
    assert_clean(result, failed=True)
    assert "30m, 12h, 7d" in result.stderr


def _is_time(candidate: str) -> bool:
    from ledgerflow.events.timesyntax import InvalidTime, parse_time

    try:
        parse_time(candidate)
    except InvalidTime:
        return False
    return True


COMMANDS = [
    ["flow-run", "ls"], ["flow-run", "inspect"], ["flow-run", "logs"], ["flow-run", "lineage"],
    ["flow-run", "cancel"], ["flow-run", "replay"], ["events", "tail"], ["events", "append"], ["stats"],
    ["deployment", "inspect"], ["deployment", "run"], ["automation", "inspect"], ["automation", "create"],
    ["block", "inspect"], ["api-key", "revoke"], ["projections", "rebuild"],
]
OPTIONS = ["--since", "--limit", "-n", "--level", "--depth", "--direction", "--by", "--state", "--after", "-f", "--type"]


@FUZZ
@given(
    command=st.sampled_from(COMMANDS),
    arguments=st.lists(st.one_of(st.sampled_from(OPTIONS), text, st.integers(-(2**70), 2**70).map(str)), max_size=4),
)
def test_random_arguments_never_escape_as_tracebacks(workdir: Path, command: list[str], arguments: list[str]) -> None:
    if "-f" in arguments or "--follow" in arguments:
        arguments = [a for a in arguments if a not in ("-f", "--follow")]  # following never ends by itself
    result = cli(*command, *arguments)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "this is a bug" not in result.output, result.output


# -- as a user sees it: real processes --------------------------------------------------------


def run(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    environ.update(LEDGERFLOW_HOME=str(workdir / "home"), NO_COLOR="1", **env)
    return subprocess.run(args, capture_output=True, text=True, env=environ, cwd=workdir, timeout=120, check=False)


def ledgerflow(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(workdir, sys.executable, "-m", "ledgerflow.api", *args, **env)


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://user@no-such-host.invalid/db", "failed to resolve host 'no-such-host.invalid'"),
    ("mysql://user:secret@db.example/prod", "unsupported database URL scheme 'mysql' in mysql://user:***@db.example/prod"),
    ("sqlite:///missing/dir/x.db", "the folder 'missing/dir' of the SQLite database does not exist"),
])
def test_a_user_sees_one_line_and_debug_shows_the_traceback(workdir: Path, url: str, says: str) -> None:
    plain = ledgerflow(workdir, "flow-run", "ls", LEDGERFLOW_DATABASE_URL=url)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("error: ") and says in plain.stderr, plain.stderr
    assert "secret" not in plain.stderr
    for debug in (ledgerflow(workdir, "--debug", "flow-run", "ls", LEDGERFLOW_DATABASE_URL=url),
                  ledgerflow(workdir, "flow-run", "ls", LEDGERFLOW_DATABASE_URL=url, LEDGERFLOW_DEBUG="1")):
        assert debug.returncode == 1 and "Traceback" in debug.stderr and "StoreUnavailable" in debug.stderr
    assert not (workdir / "missing").exists()


def test_deeply_nested_json_is_refused_in_one_line(workdir: Path) -> None:
    result = ledgerflow(workdir, "events", "append", "demo-1", "demo.happened", nested(20_000))
    assert result.returncode == 1 and result.stderr.startswith("error: the input is nested too deeply"), result.stderr
    assert "Traceback" not in result.stderr


FLOW = """
from ledgerflow import flow, task

@task
def extract() -> int:
    return 1

@flow
def etl() -> int:
    return extract()

print("result", etl())
"""


@pytest.mark.parametrize(("env", "says"), [
    ({"LEDGERFLOW_DATABASE_URL": "postgresql://user@no-such-host.invalid/db"}, "the event store cannot be reached"),
    ({"LEDGERFLOW_DATABASE_URL": "mysql://user@db.example/prod"}, "unsupported database URL scheme 'mysql'"),
    ({"LEDGERFLOW_DATABASE_URL": "sqlite:///missing/dir/x.db"},
     "the folder 'missing/dir' of the SQLite database does not exist"),
    ({"LEDGERFLOW_HEARTBEAT_SECONDS": "often"}, "LEDGERFLOW_HEARTBEAT_SECONDS='often' is not valid"),
])
def test_a_flow_script_with_a_bad_store_or_setting_prints_one_line(workdir: Path, env: dict[str, str], says: str) -> None:
    (workdir / "flow.py").write_text(FLOW)
    result = run(workdir, sys.executable, "flow.py", **env)
    assert result.returncode == 1 and "result" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    debug = run(workdir, sys.executable, "flow.py", **env, LEDGERFLOW_DEBUG="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert not (workdir / "missing").exists()


def test_the_default_home_is_still_created(workdir: Path) -> None:
    result = ledgerflow(workdir, "flow-run", "ls")
    assert result.returncode == 0 and "no flow runs" in result.stdout
    assert (workdir / "home" / "ledgerflow.db").is_file()
    assert (workdir / "home").stat().st_mode & 0o777 == 0o700


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ledgerflow {version('ledgerflow')}"


def test_a_bad_setting_is_named_by_its_variable(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_CANCEL_CHECK_SECONDS", "soon")
    result = cli("flow-run", "ls")
    assert_clean(result, failed=True)
    assert "LEDGERFLOW_CANCEL_CHECK_SECONDS='soon' is not valid" in result.stderr


def test_the_server_refuses_a_bad_database_before_starting(workdir: Path) -> None:
    result = cli("server", "start", "--port", "1", url="mysql://user:secret@db.example/prod")
    assert_clean(result, failed=True)
    assert "unsupported database URL scheme 'mysql'" in result.stderr and "secret" not in result.output
