"""Naming a flow run on the command line: its id, a unique prefix of its id, or its run name."""

from __future__ import annotations

from uuid import UUID

from ledgerflow.api.cli.client import ApiClient, ApiNotFound
from ledgerflow.api.cli.console import fail
from ledgerflow.api.cli.context import opened_store
from ledgerflow.events import EventStoreError, load_settings
from ledgerflow.projections.errors import ProjectionError
from ledgerflow.projections.lookup import resolve_run
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["resolved_run"]


def resolved_run(ref: str, code: int = 1) -> str:
    """The id of the flow run `ref` names, as the server (LEDGERFLOW_API_URL) or else the
    local store knows it; a one-line error (exit `code`) when several runs match. When none
    does, `ref` as given: the command's own call says the run does not exist."""
    try:
        return str(UUID(ref))
    except ValueError:
        pass
    settings = load_settings()
    try:
        if settings.api_url:
            with ApiClient(settings.api_url, settings.api_key) as client:
                return client.get_flow_run(ref).flow_run.id
        with opened_store() as store:
            return resolve_run(ReadModel(store), ref)
    except ApiNotFound:
        return ref
    except (ProjectionError, EventStoreError) as exc:
        fail(" ".join(str(exc).split()), code=code)
