"""The API server's own settings: where it listens, whom it answers, what runs inside it.

    LEDGERFLOW_AUTH=on|off            unset: on whenever the server binds to anything but loopback
    LEDGERFLOW_ALLOWED_HOSTS=a,b      Host names the server answers besides localhost, 127.0.0.1,
                                      ::1 and the bind address (`*.example.com` patterns, `*`: any)
    LEDGERFLOW_CORS_ORIGINS=o1,o2     browser origins (`https://dash.example.com`) that may call
                                      the API; none by default. The server's own origin always may.
    LEDGERFLOW_RUNNER_CONCURRENCY=N   requested runs the built-in runner executes at once (8)
    LEDGERFLOW_RUNNER_NICE=N          niceness added to the built-in runner's run processes, 0-19
                                      (10): the server answers first when many runs start at once
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ApiSettings", "is_loopback", "load_api_settings"]

_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 4300
    auth: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    allowed_hosts: tuple[str, ...] = ()
    """Host header values answered besides the local names and the bind address."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (besides the server's own)."""
    heartbeat_seconds: float = 15.0
    feed_window: int = 20_000
    """Newest events the feed keeps in memory for live clients; others read the log."""

    # The background services this process runs (api/http/services.py); tests turn them off.
    run_projections: bool = True
    """Keep the projections current with the log (the read model never catches up in a GET)."""
    run_runner: bool = True
    """Execute due requested runs of the default work pool (schedules, manual runs, replays)."""
    run_scheduler: bool = True
    """Materialise deployments' scheduled runs, and mark runs not started in time `Late`."""
    runner_concurrency: int = Field(default=8, ge=1, le=256)
    """Runs the built-in runner executes at once (`LEDGERFLOW_RUNNER_CONCURRENCY`)."""
    runner_nice: int = Field(default=10, ge=0, le=19)
    """Niceness added to the built-in runner's run processes (`LEDGERFLOW_RUNNER_NICE`): when a
    hundred runs start at once, the server (which records their starts) is not one process among
    a hundred on the machine's cores."""
    runner_key: str = Field(default_factory=lambda: "lf_runner_" + secrets.token_urlsafe(32), repr=False)
    """The secret the built-in runner's run processes present with auth on (scope worker):
    made anew for each `server start`, shared by its worker processes, never stored."""
    runner_prefetch_seconds: float = Field(default=10.0, ge=0, le=3600)
    """How long before its scheduled time the built-in runner starts a run's process, which then
    waits with its flow loaded (Prefect's worker prefetch)."""
    run_automations: bool = True
    """Run the automation engine (rules on the log that notify and act on runs)."""
    run_crash_monitor: bool = True
    """End `Crashed` the runs whose heartbeats stopped (api/liveness.py)."""

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
                raise ValueError(
                    f"LEDGERFLOW_ALLOWED_HOSTS: {host!r} is not a host name; a pattern looks like *.example.com"
                )
        return hosts

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin != "*" and ("://" not in origin or origin.rstrip("/").count("/") != 2):
                raise ValueError(
                    f"LEDGERFLOW_CORS_ORIGINS: {origin!r} is not an origin; "
                    "write scheme://host[:port], e.g. https://dash.example.com"
                )
        return tuple(origin.rstrip("/") for origin in origins)

    @property
    def trusted_hosts(self) -> list[str]:
        """Host header patterns to answer: the local names, the bind address, the configured ones.

        A wildcard bind address (0.0.0.0, ::) names no host: clients on other machines reach the
        server under names it cannot know, which LEDGERFLOW_ALLOWED_HOSTS must list."""
        names = [*_LOCAL_HOSTS, self.host, *self.allowed_hosts]
        return list(dict.fromkeys(_bracketed(name.lower()) for name in names if name and not _is_wildcard(name)))

    @property
    def own_url(self) -> str:
        """Where a process on this machine reaches the server (the built-in runner's run
        processes): a wildcard bind address is reached on loopback."""
        host = self.host
        if _is_wildcard(host):
            host = "::1" if ":" in host else "127.0.0.1"
        return f"http://{_bracketed(host)}:{self.port}"


def _bracketed(name: str) -> str:
    # A Host header writes an IPv6 literal in brackets ("[::1]:4300"), and Starlette compares
    # the host part with its brackets.
    try:
        return f"[{name}]" if ipaddress.ip_address(name).version == 6 else name
    except ValueError:
        return name


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(environ: Mapping[str, str], variable: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in environ.get(variable, "").split(",") if name.strip())


_FROM_ENVIRONMENT = frozenset({"allowed_hosts", "cors_origins", "runner_concurrency", "runner_nice"})


def _whole(environ: Mapping[str, str], variable: str, default: str) -> int:
    raw = environ.get(variable, "").strip() or default
    if not raw.isdigit():
        raise ValueError(f"{variable} must be a whole number, not {raw!r}")
    return int(raw)


def load_api_settings(
    environ: Mapping[str, str], host: str = "127.0.0.1", port: int = 4300
) -> ApiSettings:
    """Settings for a server on `host:port` from the `LEDGERFLOW_*` variables of `environ`."""
    raw = environ.get("LEDGERFLOW_AUTH", "").strip().lower()
    if raw in _ON:
        auth = True
    elif raw in _OFF:
        auth = False
    elif raw == "":
        auth = not is_loopback(host)
    else:
        raise ValueError(f"LEDGERFLOW_AUTH must be 'on' or 'off', not {raw!r}")
    concurrency = _whole(environ, "LEDGERFLOW_RUNNER_CONCURRENCY", "8")
    nice = _whole(environ, "LEDGERFLOW_RUNNER_NICE", "10")
    try:
        return ApiSettings(
            host=host, port=port, auth=auth,
            allowed_hosts=_names(environ, "LEDGERFLOW_ALLOWED_HOSTS"),
            cors_origins=_names(environ, "LEDGERFLOW_CORS_ORIGINS"),
            runner_concurrency=concurrency,
            runner_nice=nice,
        )
    except ValidationError as exc:  # one line, naming the variable
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if field in _FROM_ENVIRONMENT:
            message = f"LEDGERFLOW_{field.upper()}: {message}"
        raise ValueError(message) from None
