"""A user's project may hold modules named like our components: nothing of ours shadows them,
and they do not shadow us (everything of ours lives under `ledgerflow.`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FLOW = """
from ledgerflow import flow, task

import events, runtime, projections, notifications, api  # the project's own modules

@task
def double(x: int) -> int:
    return 2 * x

@flow
def shadowed(n: int = 3) -> int:
    return sum(double(i) for i in range(n)) + events.BONUS

if __name__ == "__main__":
    print("result", shadowed())
"""


def test_a_project_with_component_named_modules_runs_flows_and_the_cli(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "api").mkdir(parents=True)
    (project / "api" / "__init__.py").write_text("NAME = 'the project api'\n")
    (project / "events.py").write_text("BONUS = 100\n")
    for name in ("runtime", "projections", "notifications"):
        (project / f"{name}.py").write_text(f"NAME = {name!r}\n")
    (project / "flow.py").write_text(FLOW)
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("LEDGERFLOW_DATABASE_URL", None)
    env.pop("LEDGERFLOW_API_URL", None)

    ran = subprocess.run([sys.executable, "flow.py"], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "result 106" in ran.stdout

    listed = subprocess.run(
        [str(Path(sys.executable).with_name("ledgerflow")), "flow-run", "ls"], cwd=project, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "shadowed" in listed.stdout and "Completed" in listed.stdout
