"""Message templates: Jinja2 rendered in a sandbox, checked when a rule is created.

A template sees three names: `event` (the triggering event as the API returns it), `flow_run`
(the run as `/api/flow-runs/{id}` returns it, None when the event has no run) and `automation`.
`check` refuses at creation what would fail for sure later: a syntax error, an unknown filter,
a name other than those three. A missing attribute renders as nothing rather than failing a
delivery (`{{ flow_run.flow_name }}` on an event without a run).

The sandbox is Jinja2's immutable sandbox: templates cannot reach Python internals
(`__class__`, `__globals__`, ...) nor mutate what they are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import ChainableUndefined, Template, TemplateError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ledgerflow.notifications.errors import TemplateRenderError

__all__ = ["CONTEXT_NAMES", "check", "check_tree", "render", "render_tree"]

CONTEXT_NAMES = frozenset({"event", "flow_run", "automation"})
_MAX_TEMPLATE = 100_000


def _tojson(value: Any, indent: int | None = None) -> str:
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, default=str, option=option | orjson.OPT_NON_STR_KEYS).decode()


class _Sandbox(ImmutableSandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # Jinja returns an undefined value here, which our lenient undefined would render as
        # nothing: an attempt to reach internals should fail loudly instead.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed")


def _environment(html: bool) -> ImmutableSandboxedEnvironment:
    env = _Sandbox(
        undefined=ChainableUndefined, autoescape=html, keep_trailing_newline=True
    )
    # JSON bodies need plain JSON (Jinja's own tojson escapes <, > and & for HTML).
    env.filters["tojson"] = _tojson
    return env


_TEXT = _environment(html=False)
_HTML = _environment(html=True)


def check(source: str, *, html: bool = False) -> str:
    """`source` if it compiles and uses only the context names; else ValueError saying why."""
    if len(source) > _MAX_TEMPLATE:
        raise ValueError(f"template is {len(source)} characters; at most {_MAX_TEMPLATE}")
    env = _HTML if html else _TEXT
    try:
        parsed = env.parse(source)
        env.from_string(source)  # unknown filters and tests fail at compile time
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ValueError(f"template error{where}: {exc.message or exc}") from None
    unknown = meta.find_undeclared_variables(parsed) - CONTEXT_NAMES - set(env.globals)
    if unknown:
        raise ValueError(
            f"template uses unknown name(s) {', '.join(sorted(unknown))}: "
            f"templates see {', '.join(sorted(CONTEXT_NAMES))}"
        )
    return source


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    return (_HTML if html else _TEXT).from_string(source)


def render(source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """Render a checked template; TemplateRenderError if it fails (e.g. the sandbox refuses)."""
    try:
        return _compiled(source, html).render(dict(context))
    except Exception as exc:  # noqa: BLE001 - any failure inside a user's template is reported as one
        raise TemplateRenderError(f"template failed: {type(exc).__name__}: {exc}") from exc


def render_tree(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON-like structure (Slack blocks, header values)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_tree(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render_tree(item, context) for key, item in value.items()}
    return value


def check_tree(value: Any) -> Any:
    """`check` every string inside a JSON-like structure."""
    if isinstance(value, str):
        check(value)
    elif isinstance(value, list):
        for item in value:
            check_tree(item)
    elif isinstance(value, dict):
        for item in value.values():
            check_tree(item)
    return value
