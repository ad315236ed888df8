"""`ledgerflow flow-run replay` on both stores: one command, only the failed part runs again."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ledgerflow.events import open_store
from ledgerflow.events.runs import read_flow_run, request_flow_run
from tests.integration.test_cli_control import LEDGERFLOW, REPO, cli_env
from tests.runtime.replay_flows import executed


def test_replay_from_the_command_line(tmp_path: Path, store_url: str) -> None:
    env = cli_env(tmp_path, store_url)
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "fail-7").write_text("")
    with open_store(store_url) as store:
        scheduled = request_flow_run(store, flow_name="ten_steps", entrypoint="tests.runtime.replay_flows:ten_steps",
                                     working_dir=str(REPO), parameters={"folder": str(folder)})
        original = scheduled.data["flow_run_id"]
    first = subprocess.run([LEDGERFLOW, "flow-run", "execute", original], env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 1 and "finished Failed" in first.stdout

    plan = subprocess.run([LEDGERFLOW, "flow-run", "replay", original, "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert "6 of 7 task runs would be reused" in plan.stdout
    assert plan.stdout.count("reuse") >= 6 and "it ended Failed" in plan.stdout

    failing = subprocess.run([LEDGERFLOW, "flow-run", "replay", original], env=env, capture_output=True, text=True,
                             timeout=120)
    assert failing.returncode == 1 and "finished Failed" in failing.stdout  # still told to fail

    (folder / "fail-7").unlink()
    (folder / "executed").unlink()
    done = subprocess.run([LEDGERFLOW, "flow-run", "replay", original], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "finished Completed" in done.stdout
    assert executed(folder) == [f"step-{n}" for n in range(7, 11)]

    (folder / "executed").unlink()
    changed = subprocess.run([LEDGERFLOW, "flow-run", "replay", original, "--no-reuse", "step", "-p", f"folder={folder}"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert changed.returncode == 0, changed.stderr
    assert executed(folder) == [f"step-{n}" for n in range(1, 11)]

    detached = subprocess.run([LEDGERFLOW, "flow-run", "replay", original, "--detach"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert detached.returncode == 0 and "requested" in detached.stdout
    requested = detached.stdout.split()[1]
    with open_store(store_url) as store:
        history = read_flow_run(store, requested)
        assert history.state is not None and history.state.name == "Scheduled"
        assert history.created["replay_of"] == original


def test_replay_errors_are_one_line(tmp_path: Path, store_url: str) -> None:
    env = cli_env(tmp_path, store_url)
    missing = subprocess.run([LEDGERFLOW, "flow-run", "replay", "no-such-run"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1 and "no run with id 'no-such-run'" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = subprocess.run([LEDGERFLOW, "flow-run", "replay", "x", "--param", "novalue"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "must look like key=value" in bad.stderr
    with open_store(store_url) as store:
        scheduled = request_flow_run(store, flow_name="add", entrypoint="tests.runtime.sample_flows:add",
                                     working_dir=str(REPO), parameters={"a": 1})
    waiting = subprocess.run([LEDGERFLOW, "flow-run", "replay", scheduled.data["flow_run_id"]], env=env,
                             capture_output=True, text=True, timeout=120)
    assert waiting.returncode == 1 and "replay it once it has finished" in waiting.stderr


def test_inspect_shows_what_a_replay_reused_and_from_where(tmp_path: Path, store_url: str) -> None:
    env = cli_env(tmp_path, store_url)
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "fail-3").write_text("")
    with open_store(store_url) as store:
        scheduled = request_flow_run(store, flow_name="ten_steps", entrypoint="tests.runtime.replay_flows:ten_steps",
                                     working_dir=str(REPO), parameters={"folder": str(folder)})
        original = scheduled.data["flow_run_id"]
    subprocess.run([LEDGERFLOW, "flow-run", "execute", original], env=env, capture_output=True, timeout=120)
    (folder / "fail-3").unlink()
    replayed = subprocess.run([LEDGERFLOW, "flow-run", "replay", original], env=env, capture_output=True, text=True,
                              timeout=120)
    new_id = replayed.stdout.split()[1]
    with open_store(store_url) as store:
        first_two = [e.data["task_run_id"] for e in store.read_stream(f"flow-run-{original}")
                     if e.type == "task-run.created"][:2]
    shown = subprocess.run([LEDGERFLOW, "flow-run", "inspect", new_id], env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"replay of {original}" in shown.stdout
    assert all(f"reused from task run {task_run_id}" in shown.stdout for task_run_id in first_two)
    assert shown.stdout.count("reused from task run") == 2  # steps 1 and 2; step 3 failed, so it ran
    original_view = subprocess.run([LEDGERFLOW, "flow-run", "inspect", original], env=env, capture_output=True,
                                   text=True, timeout=120)
    assert f"replayed by {new_id}" in original_view.stdout
