"""`ledgerflow events ...` as a user runs it: real processes on a real store."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledgerflow.events import open_store


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """The embedded SQLite store in a home of its own."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    return {**environ, "LEDGERFLOW_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def any_env(env: dict[str, str], store_url: str) -> dict[str, str]:
    """The same, on each database."""
    return {**env, "LEDGERFLOW_DATABASE_URL": store_url}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def stored(env: dict[str, str]) -> list[object]:
    Path(env["LEDGERFLOW_HOME"]).mkdir(exist_ok=True)  # opening a store creates no folder but the configured home
    url = env.get("LEDGERFLOW_DATABASE_URL") or f"sqlite:///{env['LEDGERFLOW_HOME']}/ledgerflow.db"
    store = open_store(url)
    try:
        return [(e.stream, e.type, e.data) for e in store.read_stream("s") + store.read_stream("demo-1")]
    finally:
        store.close()


def json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines()]


def test_append_tail_filter_after_and_json(env: dict[str, str]) -> None:
    empty = run(env, "events", "tail")
    assert empty.returncode == 0 and empty.stdout == ""
    appended = run(env, "events", "append", "demo-1", "demo.started", '{"rows": 3}')
    assert appended.returncode == 0, appended.stderr
    assert "demo.started" in appended.stdout and "demo-1#1" in appended.stdout
    assert run(env, "events", "append", "demo-1", "demo.finished").returncode == 0
    assert run(env, "events", "append", "other-1", "note.logged", '{"message": "hi"}').returncode == 0

    tail = run(env, "events", "tail")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.strip().splitlines()
    assert [line.split()[3] for line in lines] == ["demo.started", "demo.finished", "note.logged"]
    assert "demo-1#1" in lines[0] and '{"rows":3}' in lines[0]
    assert "other-1#1" in lines[2]

    newest = run(env, "events", "tail", "-n", "1").stdout.strip().splitlines()
    assert len(newest) == 1 and "note.logged" in newest[0]
    records = json_lines(run(env, "events", "tail", "--json").stdout)
    assert [(r["stream"], r["stream_position"], r["type"], r["data"]) for r in records] == [
        ("demo-1", 1, "demo.started", {"rows": 3}),
        ("demo-1", 2, "demo.finished", {}),
        ("other-1", 1, "note.logged", {"message": "hi"}),
    ]
    filtered = json_lines(run(env, "events", "tail", "--type", "demo.*", "--json").stdout)
    assert [r["type"] for r in filtered] == ["demo.started", "demo.finished"]
    both = json_lines(run(env, "events", "tail", "-t", "*.finished", "-t", "note.*", "--json").stdout)
    assert [r["type"] for r in both] == ["demo.finished", "note.logged"]
    after = json_lines(run(env, "events", "tail", "--after", str(records[0]["cursor"]), "--json").stdout)
    assert after == records[1:]
    after_filtered = run(env, "events", "tail", "--after", str(records[0]["cursor"]), "--type", "demo.*", "--json")
    assert [r["type"] for r in json_lines(after_filtered.stdout)] == ["demo.finished"]
    assert run(env, "events", "tail", "--after", str(records[-1]["cursor"])).stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "append", "bad name", "x"], "stream name"),
        (["events", "append", "--", "-lead", "x"], "stream name"),
        (["events", "append", "s", "x", "[1"], "not valid JSON"),
        (["events", "append", "s", "x", "{'single': 1}"], "not valid JSON"),
        (["events", "append", "s", "x", "[1]"], "JSON object"),
        (["events", "append", "s", "bad type!"], "event type"),
        (["events", "append", "s", "x", '{"n": 18446744073709551616}'], "not JSON-serialisable"),
        (["events", "tail", "--after", "nope"], "not a cursor"),
        (["events", "tail", "--after", "1.2.3", "--follow"], "not a cursor"),
        (["events", "tail", "-n", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(env: dict[str, str], args: list[str], message: str) -> None:
    result = run(env, *args)
    assert result.returncode != 0
    first, *rest = result.stderr.strip().splitlines()
    assert first.startswith("error:") and message in first
    assert len(rest) <= 1, result.stderr  # at most a hint of what to do instead
    assert "Traceback" not in result.stderr
    assert stored(env) == []


class Follower:
    """`events tail --follow` in the background, its output lines collected as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.api", "events", "tail", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def next_line(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"tail --follow exited: {self.process.stderr.read()}"  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "tail --follow printed nothing new"

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)
        self.reader.join(timeout=30)


def test_tail_follow_prints_events_appended_later(any_env: dict[str, str]) -> None:
    assert run(any_env, "events", "append", "s", "before").returncode == 0
    follower = Follower(any_env)
    try:
        assert "before" in follower.next_line()
        assert run(any_env, "events", "append", "s", "after", '{"n": 1}').returncode == 0
        line = follower.next_line()
        assert "after" in line and "s#2" in line and '{"n":1}' in line
    finally:
        follower.stop()
    assert follower.lines.empty()


def test_tail_follow_filters_types(env: dict[str, str]) -> None:
    follower = Follower(env, "--type", "job.*", "--json")
    try:
        for kind in ["note.logged", "job.Running", "pipeline.Running", "job.Completed"]:
            assert run(env, "events", "append", "s", kind).returncode == 0
        assert [json.loads(follower.next_line())["type"] for _ in range(2)] == ["job.Running", "job.Completed"]
    finally:
        follower.stop()
    assert follower.lines.empty()


def test_an_unusable_home_is_one_line(env: dict[str, str], home: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("")
    result = run(env, "events", "tail")
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
