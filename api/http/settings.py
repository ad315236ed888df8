"""The API server's own settings: where it listens, whether it asks for API keys, what runs
inside it.

`LEDGERFLOW_AUTH=on|off`; unset, auth is on whenever the server binds to anything but loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

__all__ = ["ApiSettings", "is_loopback", "load_api_settings"]

_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 4300
    auth: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    heartbeat_seconds: float = 15.0
    feed_window: int = 20_000
    """Newest events the feed keeps in memory for live clients; others read the log."""

    # The background services this process runs (api/http/services.py); tests turn them off.
    run_projections: bool = True
    """Keep the projections current with the log (the read model never catches up in a GET)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_api_settings(
    environ: Mapping[str, str], host: str = "127.0.0.1", port: int = 4300
) -> ApiSettings:
    """Settings for a server on `host:port`, reading `LEDGERFLOW_AUTH` from `environ`."""
    raw = environ.get("LEDGERFLOW_AUTH", "").strip().lower()
    if raw in _ON:
        auth = True
    elif raw in _OFF:
        auth = False
    elif raw == "":
        auth = not is_loopback(host)
    else:
        raise ValueError(f"LEDGERFLOW_AUTH must be 'on' or 'off', not {raw!r}")
    return ApiSettings(host=host, port=port, auth=auth)
