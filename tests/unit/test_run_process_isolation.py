"""What a reused worker run process forgets between runs (runtime/worker.py): the flows' own
Python files, and nothing installed, compiled, or of ledgerflow itself."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from ledgerflow.runtime.worker import _is_user_code


def test_only_the_flows_own_python_files_count_as_code_to_forget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lf_own_flow_code.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("lf_own_flow_code")
    try:
        assert _is_user_code("lf_own_flow_code")
    finally:
        del sys.modules["lf_own_flow_code"]
    # The standard library, an installed package, a compiled extension, a built-in, ledgerflow
    # (all imported by the worker module itself).
    for kept in ("json", "httpx", "pydantic_core._pydantic_core", "_json", "ledgerflow.runtime.worker"):
        assert not _is_user_code(kept), kept
