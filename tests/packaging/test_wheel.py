"""The built wheel installs `ledgerflow` and nothing else at the top level, and holds every
module of every component: a sub-package missing from `[tool.setuptools] packages` fails here."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("events", "runtime", "projections", "notifications", "api")
"""Folders installed as `ledgerflow.<folder>`; the folder `ledgerflow/` is `ledgerflow` itself."""


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    # Build from a copy, so the checkout gets no build/ folder; no isolation, so no download:
    # the test extras install the build backend.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".*")
    for folder in (*COMPONENTS, "ledgerflow"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("ledgerflow-*.whl")
    return zipfile.ZipFile(wheel)


def expected_modules() -> set[str]:
    found = set()
    for folder in (*COMPONENTS, "ledgerflow"):
        installed = "ledgerflow" if folder == "ledgerflow" else f"ledgerflow/{folder}"
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                found.add(f"{installed}/{path.relative_to(ROOT / folder).as_posix()}")
    return found


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The file names in a wheel built from this checkout (built once for the module)."""
    with build_wheel(tmp_path_factory.mktemp("wheel")) as wheel:
        return set(wheel.namelist())


def test_the_wheel_holds_every_module_under_ledgerflow_only(names: set[str]) -> None:
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == {"ledgerflow"}
    expected = expected_modules()
    assert "ledgerflow/api/http/routers/runs.py" in expected and "ledgerflow/api/cli/main.py" in expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add the sub-package to [tool.setuptools] packages): {missing}"


def test_the_wheel_ships_the_dashboard_pages_and_assets(names: set[str]) -> None:
    """Templates, CSS, ES modules and the vendored chart library (with its licence) are package
    data: without them `/` of an installed server is a 500."""
    http = ROOT / "api" / "http"
    assets = {
        f"ledgerflow/api/http/{path.relative_to(http).as_posix()}"
        for folder in ("templates", "static")
        for path in (http / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert "ledgerflow/api/http/static/vendor/uplot/LICENSE" in assets
    assert "ledgerflow/api/http/templates/runs.html" in assets and "ledgerflow/api/http/static/js/runs.js" in assets
    missing = sorted(assets - names)
    assert not missing, f"not in the wheel (see [tool.setuptools.package-data]): {missing}"
