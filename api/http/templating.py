"""The dashboard's server side: Jinja2 templates, their filters, the static assets, and the
headers every page is sent with.

Pages are rendered from `templates/` and load CSS and ES modules from `static/` (mounted at
`/static`); nothing comes from another origin, so the Content-Security-Policy allows only
'self' and no inline script or style (artifact text is escaped, and a CSP stops what slips by).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

__all__ = ["STATIC", "STATIC_URL", "TEMPLATES", "Assets", "page", "format_duration"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_URL = "/static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Browsers refuse an ES module served with any other type; the platform's table may lack it.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def format_duration(seconds: float | None) -> str:
    """`850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`: the same as static/js/format.js."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min"


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _state_class(state_type: object) -> str:
    return f"state-{str(state_type or 'none').lower()}"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=format_duration, utc=_utc, iso=_iso, state_class=_state_class)
    env.globals["static"] = STATIC_URL
    return env


def page(name: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """Render template `name` as a page with the dashboard's security headers."""
    html = _environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


class Assets(StaticFiles):
    """The static folder; browsers revalidate (a 304 by ETag) so an upgrade is seen at once."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
