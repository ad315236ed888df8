"""Process configuration: one frozen Settings, read once from `LEDGERFLOW_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["InvalidSettings", "Settings", "debug_requested", "load_settings"]


class InvalidSettings(ValueError):
    """A `LEDGERFLOW_*` variable that does not parse; the message names it and what it must be."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERFLOW_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".ledgerflow")
    database_url: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    debug: bool = False
    """Show full tracebacks instead of one-line errors (the CLI's `--debug`)."""
    cancel_check_seconds: float = Field(default=0.5, gt=0, le=60)
    """How often a running flow looks in the log for a cancel nobody else told it about."""
    heartbeat_seconds: float = Field(default=30.0, gt=0, le=86_400)
    """How often a running flow run appends `flow-run.heartbeat`; a run silent for longer than
    1.5 intervals is taken for crashed by the server's monitor (events/liveness.py)."""
    results_url: str | None = None
    """Where task results and the cache index live: a folder or an fsspec URL (`s3://bucket/prefix`);
    default `<home>/results`. Machines that share it share results and cache hits."""
    concurrency_lease_seconds: float = Field(default=30.0, ge=0.5, le=86_400)
    """How long a concurrency slot outlives a holder that stops renewing it (a crashed process)."""
    secret_key: SecretStr | None = None
    """Fernet key(s) that encrypt notification blocks at rest (comma-separated: the first
    encrypts, all decrypt); unset, one is generated into `$LEDGERFLOW_HOME/secret.key`."""
    late_after_seconds: float = Field(default=60.0, ge=0, le=86_400 * 7)
    """A requested run not started this long after its scheduled time becomes `Late`."""
    scheduler_horizon_seconds: float = Field(default=3600.0, gt=0, le=86_400 * 366)
    """How far ahead the scheduler materialises slots (at least `scheduler_min_runs` of them)."""
    scheduler_min_runs: int = Field(default=3, ge=1, le=1000)
    scheduler_max_runs: int = Field(default=100, ge=1, le=10_000)
    """At most this many future runs per schedule, however close together its slots are."""
    scheduler_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    """How often the scheduler looks for deployment changes and slots coming into its horizon."""

    @field_validator("home")
    @classmethod
    def _expand(cls, home: Path) -> Path:
        return home.expanduser()

    @property
    def store_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the home folder."""
        return self.database_url or f"sqlite:///{self.home / 'ledgerflow.db'}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `environ` (default: the process environment)."""
    try:
        if environ is None:
            return Settings()
        prefix = "LEDGERFLOW_"
        return Settings.model_validate({k[len(prefix):].lower(): v for k, v in environ.items() if k.startswith(prefix)})
    except ValidationError as exc:
        raise InvalidSettings("; ".join(_invalid(error) for error in exc.errors())) from None


def _invalid(error: ErrorDetails) -> str:
    variable = "LEDGERFLOW_" + "_".join(map(str, error["loc"])).upper()
    return f"{variable}={error.get('input')!r} is not valid: {error['msg']}"


def debug_requested() -> bool:
    """Whether `LEDGERFLOW_DEBUG` asks for tracebacks, read alone (when other settings do not parse)."""
    try:
        return TypeAdapter(bool).validate_python(os.environ.get("LEDGERFLOW_DEBUG", "false"))
    except ValidationError:
        return False
