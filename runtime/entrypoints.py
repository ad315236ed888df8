"""Where a flow's code lives, recorded so that another process in another folder can load it.

A run records `entrypoint` and `working_dir`. The entrypoint is `package.module:function` when
the module can be imported from the working directory or the installed packages, and
otherwise `path/to/file.py:function`, relative to the working directory when the file lies
under it. Loading puts the working directory on `sys.path` (as it was when the run started)
and a script's own folder too (as `python script.py` does), so the flow's own imports work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

__all__ = ["Entrypoint", "EntrypointError", "entrypoint_of", "load_entrypoint", "module_label"]

_SCRIPT_PREFIX = "__ledgerflow_entrypoint_"


class EntrypointError(Exception):
    """The entrypoint cannot be loaded (file or module gone, name missing, import failed)."""


class Entrypoint(NamedTuple):
    entrypoint: str
    working_dir: str


def _package_root(module: ModuleType) -> Path | None:
    """The sys.path folder `module` was found under (None when it has no file)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    depth = module.__name__.count(".") + (2 if path.name == "__init__.py" else 1)
    return path.parents[depth - 1]


def module_label(fn: Any) -> str:
    """The name of `fn`'s module, the same whether its file runs as a script (`__main__`) or was
    loaded from an entrypoint: task keys (replay, caching) must match across the two."""
    name: str = fn.__module__
    if name == "__main__" or name.startswith(_SCRIPT_PREFIX):
        file = getattr(sys.modules.get(name), "__file__", None)
        if file:
            return Path(file).stem
    return name


def entrypoint_of(fn: Any) -> Entrypoint | None:
    """How to load `fn` again from another process (None for functions defined inside others)."""
    qualname: str = getattr(fn, "__qualname__", "")
    if not qualname or "<locals>" in qualname:
        return None
    working_dir = Path.cwd().resolve()
    module = sys.modules.get(fn.__module__)
    if module is None:
        return None
    if fn.__module__ != "__main__" and not fn.__module__.startswith(_SCRIPT_PREFIX):
        root = _package_root(module)
        script_dir = Path(sys.path[0]).resolve() if sys.path and sys.path[0] else working_dir
        # Found only through the running script's own folder: another process would not find it.
        if root is None or root != script_dir or root == working_dir:
            return Entrypoint(f"{fn.__module__}:{qualname}", str(working_dir))
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    shown = path.relative_to(working_dir) if path.is_relative_to(working_dir) else path
    return Entrypoint(f"{shown.as_posix()}:{qualname}", str(working_dir))


def load_entrypoint(entrypoint: str, working_dir: str | None = None) -> Any:
    """The object `entrypoint` names (`module:name` or `file.py:name`)."""
    if "\x00" in entrypoint or (working_dir and "\x00" in working_dir):
        raise EntrypointError("an entrypoint or working directory cannot contain a NUL character")
    target, sep, qualname = entrypoint.rpartition(":")
    if not sep or not target or not qualname:
        raise EntrypointError(f"entrypoint {entrypoint!r} must look like 'module:function' or 'file.py:function'")
    folder = Path(working_dir) if working_dir else Path.cwd()
    if target.endswith(".py") or "/" in target or os.sep in target:
        module = _load_file(folder / target if not Path(target).is_absolute() else Path(target))
    else:
        _on_path(folder)
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # noqa: BLE001 - any import failure is the entrypoint's problem
            raise EntrypointError(
                f"cannot import module {target!r} (working directory {folder}): {type(exc).__name__}: {exc}"
            ) from exc
    found: Any = module
    for part in qualname.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise EntrypointError(f"{target} has no {qualname!r} (entrypoint {entrypoint!r})") from None
    return found


def _on_path(folder: Path) -> None:
    text = str(folder)
    if text not in sys.path:
        sys.path.insert(0, text)


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise EntrypointError(f"flow file {path} does not exist")
    resolved = path.resolve()
    name = _SCRIPT_PREFIX + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"cannot load {path} as Python code")
    module = importlib.util.module_from_spec(spec)
    _on_path(resolved.parent)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure while importing the file
        del sys.modules[name]
        raise EntrypointError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module
