"""`ledgerflow flow-run ...`, `stats` and `projections ...` as a user runs them: real processes
on the embedded store, no server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledgerflow.events import open_store
from testdata.synthetic import SyntheticRun

FLOW = textwrap.dedent(
    """
    from ledgerflow.runtime import create_markdown_artifact, flow, get_run_logger, task

    attempts = []

    @task
    def extract() -> list[int]:
        get_run_logger().info("extracted 3 rows")
        return [1, 2, 3]

    @task(retries=1)
    def double(rows: list[int]) -> list[int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("flaky once")
        return [2 * r for r in rows]

    @flow
    def child(rows: list[int]) -> int:
        return sum(rows)

    @flow(name="pipeline")
    def pipeline() -> int:
        rows = double(extract())
        create_markdown_artifact("# done", key="summary")
        get_run_logger().warning("almost there")
        return child(rows)

    if __name__ == "__main__":
        print(pipeline())
    """
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    return {**environ, "LEDGERFLOW_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "250"}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )


def seed(env: dict[str, str], *runs: SyntheticRun) -> None:
    Path(env["LEDGERFLOW_HOME"]).mkdir(exist_ok=True)  # opening a store creates no folder but the configured home
    store = open_store(f"sqlite:///{env['LEDGERFLOW_HOME']}/ledgerflow.db")
    try:
        for each in runs:
            store.append(each.stream, each.events)
    finally:
        store.close()


def test_a_real_flow_run_is_listed_inspected_logged_drawn_and_counted(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(FLOW)
    flow = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert flow.returncode == 0, flow.stderr
    assert flow.stdout.strip() == "12"

    listed = run(env, "flow-run", "ls")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert sorted(row[1] for row in rows) == ["child", "pipeline"]
    assert all("Completed" in row for row in rows)
    pipeline_id = next(row[0] for row in rows if row[1] == "pipeline")

    inspected = run(env, "flow-run", "inspect", pipeline_id)
    assert inspected.returncode == 0, inspected.stderr
    assert "AwaitingRetry" in inspected.stdout and "ValueError: flaky once" in inspected.stdout
    assert "summary" in inspected.stdout and "markdown" in inspected.stdout
    for task_name in ("extract", "double", "child"):
        assert task_name in inspected.stdout

    logs = run(env, "flow-run", "logs", pipeline_id, "--level", "WARNING")
    assert logs.returncode == 0, logs.stderr
    assert "almost there" in logs.stdout and "extracted 3 rows" not in logs.stdout
    assert "extracted 3 rows" in run(env, "flow-run", "logs", pipeline_id).stdout
    followed = run(env, "flow-run", "logs", pipeline_id, "--follow")  # the run is over: ends at once
    assert followed.returncode == 0 and "almost there" in followed.stdout

    tree = run(env, "flow-run", "lineage", pipeline_id)
    assert tree.returncode == 0, tree.stderr
    double_line = next(line for line in tree.stdout.splitlines() if "double" in line)
    assert "<- extract" in double_line
    assert any("subflow" in line and "child" in line for line in tree.stdout.splitlines())

    stats = run(env, "stats", "--flow", "pipeline")
    assert stats.returncode == 0, stats.stderr
    (row,) = [line.split() for line in stats.stdout.splitlines() if line.strip().startswith("pipeline")]
    assert row[1:6] == ["1", "1", "0", "0", "100.0%"]


def test_ls_filters_and_pages_seeded_runs(env: dict[str, str]) -> None:
    now = datetime.now(UTC)
    ok = SyntheticRun("etl", now - timedelta(hours=1), tags=["prod"])
    ok.state("Running")
    ok.state("Completed")
    bad = SyntheticRun("etl", now - timedelta(days=3))
    bad.state("Running")
    bad.state("Failed", error="boom")
    seed(env, ok, bad)
    assert [line.split()[0] for line in run(env, "flow-run", "ls", "--state", "FAILED").stdout.splitlines()[1:]] == [bad.id]
    assert [line.split()[0] for line in run(env, "flow-run", "ls", "--tag", "prod").stdout.splitlines()[1:]] == [ok.id]
    assert [line.split()[0] for line in run(env, "flow-run", "ls", "--since", "1d").stdout.splitlines()[1:]] == [ok.id]
    first = run(env, "flow-run", "ls", "-n", "1").stdout.splitlines()
    cursor = first[-1].split("--cursor ")[1]
    second = run(env, "flow-run", "ls", "-n", "1", "--cursor", cursor).stdout.splitlines()
    assert [first[1].split()[0], second[1].split()[0]] == [ok.id, bad.id]
    stats = run(env, "stats", "--since", "7d").stdout
    assert "50.0%" in stats


def test_names_and_errors_that_look_like_markup_print_as_they_are(env: dict[str, str]) -> None:
    odd = SyntheticRun("load[raw]", datetime.now(UTC), tags=["[bold]"])
    odd.state("Running")
    odd.state("Failed", error="ValueError: expected [/] in [red]x[/red]")
    seed(env, odd)
    listed = run(env, "flow-run", "ls")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == [odd.id, "load[raw]"] and "[bold]" in listed.stdout
    inspected = run(env, "flow-run", "inspect", odd.id)
    assert inspected.returncode == 0, inspected.stderr
    assert "ValueError: expected [/] in [red]x[/red]" in inspected.stdout


def test_piped_output_keeps_every_row_on_one_line_whole(env: dict[str, str]) -> None:
    long_name = "a-flow-with-a-rather-long-name-that-would-not-fit-in-eighty-columns"
    each = SyntheticRun(long_name, datetime.now(UTC), tags=["nightly", "warehouse"])
    each.state("Completed")
    seed(env, each)
    piped = {k: v for k, v in env.items() if k != "COLUMNS"}  # what `| grep` or `> file` gets
    (row,) = run(piped, "flow-run", "ls").stdout.splitlines()[1:]
    assert row.split()[:2] == [each.id, long_name] and "nightly,warehouse" in row


def test_projections_rebuild_and_status(env: dict[str, str]) -> None:
    run_ = SyntheticRun("etl", datetime.now(UTC))
    seed(env, run_)
    before = run(env, "flow-run", "ls").stdout
    rebuilt = run(env, "projections", "rebuild", "runs")
    assert rebuilt.returncode == 0, rebuilt.stderr
    status = {line.split()[0]: line.split() for line in run(env, "projections", "status").stdout.splitlines()[1:]}
    assert status["runs"][1] == "2" and status["lineage"][1] == "1"
    assert run(env, "flow-run", "ls").stdout == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flow-run", "inspect", "no-such-run"], "no run with id 'no-such-run'"),
        (["flow-run", "logs", "no-such-run"], "no run with id"),
        (["flow-run", "lineage", "no-such-run"], "no run with id"),
        (["flow-run", "ls", "--since", "soon"], "--since 'soon'"),
        (["flow-run", "ls", "--state", "Exploded"], "unknown state 'Exploded'"),
        (["flow-run", "ls", "--cursor", "zzz"], "not a page cursor"),
        (["flow-run", "logs", "x", "--level", "LOUD"], "not a log level"),
        (["stats", "--since", "7y"], "--since '7y'"),
        (["stats", "--by", "color"], "--by 'color'"),
        (["projections", "rebuild", "nope"], "no projection named 'nope'"),
        (["flow-run", "ls", "--since", "[/]"], "--since '[/]'"),  # rich markup in input is text
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(env: dict[str, str], args: list[str], message: str) -> None:
    result = run(env, *args)
    assert result.returncode != 0
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error:") and message in first
    assert "Traceback" not in result.stderr


def test_logs_follow_prints_new_lines_until_the_run_ends(env: dict[str, str]) -> None:
    live = SyntheticRun("etl", datetime.now(UTC))
    live.state("Running")
    live.log("first line")
    seed(env, live)
    follower = subprocess.Popen(
        [sys.executable, "-m", "ledgerflow.api", "flow-run", "logs", live.id, "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert follower.stdout is not None
        assert "first line" in follower.stdout.readline()  # printed before anything new exists
        live.events.clear()
        live.log("second line")
        live.state("Completed")
        seed(env, live)
        out, err = follower.communicate(timeout=60)  # exits by itself once the run is over
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert "second line" in out
