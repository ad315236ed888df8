"""The dashboard's server side: Jinja2 templates, their filters, the static assets, and the
headers every page is sent with.

Pages are rendered from `templates/` and load ES modules from `static/` (mounted at `/static`).
What the first paint waits for, the stylesheet and the theme script, is inlined into every page
(a cold browser would otherwise fetch both before painting anything). Nothing comes from another
origin, and the Content-Security-Policy allows only 'self' and those two inline blocks, by their
hashes (artifact text is escaped, and a CSP stops what slips by).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

__all__ = ["STATIC", "STATIC_URL", "TEMPLATES", "Assets", "page", "format_duration"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_URL = "/static"

# Browsers refuse an ES module served with any other type; the platform's table may lack it.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")


@dataclass(frozen=True)
class InlineAssets:
    """The stylesheet and the theme script as every page's <head> carries them."""

    css: Markup
    script: Markup

    @classmethod
    def load(cls) -> InlineAssets:
        return cls(Markup((STATIC / "css" / "dashboard.css").read_text()), Markup((STATIC / "js" / "theme.js").read_text()))

    @property
    def content_security_policy(self) -> str:
        return (
            f"default-src 'self'; script-src 'self' {_csp_hash(self.script)}; style-src 'self' {_csp_hash(self.css)}; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        )


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=1)
def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _inline().content_security_policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


@lru_cache(maxsize=1)
def _inline() -> InlineAssets:
    return InlineAssets.load()


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
    env.globals["inline"] = _inline()
    return env


def page(name: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """Render template `name` as a page with the dashboard's security headers."""
    html = _environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=_headers())


class Assets(StaticFiles):
    """The static folder; browsers revalidate (a 304 by ETag) so an upgrade is seen at once."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
