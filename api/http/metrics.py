"""Prometheus metrics of one server process.

Figures that describe the shared database (log head, projection lag, runs by state) are read
from it at scrape time, so every process on one database reports the same values; counters
and latencies are per process, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ledgerflow.events import Cursor

if TYPE_CHECKING:
    from ledgerflow.api.http.state import ServerState

__all__ = ["Metrics", "projection_lag"]


_LAG_CAP = 10_000


def projection_lag(state: ServerState) -> dict[str, int]:
    """Events of its types the log has past each projection's checkpoint (capped at 10,000)."""
    runner = state.read_model.runner
    return {
        name: len(state.store.read_all(checkpoint.cursor, _LAG_CAP, list(runner.projections[name].types)))
        for name, checkpoint in runner.checkpoints().items()
    }


class _LogCollector(Collector):
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        head = GaugeMetricFamily("ledgerflow_log_head_position", "Global position of the newest event")
        head.add_metric([], Cursor.parse(self.state.store.head()).position)
        yield head
        lag = GaugeMetricFamily(
            "ledgerflow_projection_lag_events", "Events past a projection's checkpoint", labels=["projection"]
        )
        for name, behind in projection_lag(self.state).items():
            lag.add_metric([name], behind)
        yield lag
        runs = GaugeMetricFamily("ledgerflow_flow_runs", "Flow runs by state type", labels=["state"])
        # No query in projections.queries counts runs by state yet: one GROUP BY on its table.
        with self.state.read_model.reading("runs") as (conn, tables):
            table = tables["flow_runs"]
            for state, count in conn.execute(select(table.c.state_type, func.count()).group_by(table.c.state_type)):
                runs.add_metric([state or "NONE"], count)
        yield runs
        clients = GaugeMetricFamily("ledgerflow_feed_clients", "Connected live-feed clients (this process)")
        clients.add_metric([], self.state.hub.clients)
        yield clients


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.appended = Counter(
            "ledgerflow_events_appended", "Events appended through this process's API",
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledgerflow_http_request_duration_seconds", "HTTP request latency",
            ["method", "route", "status"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def watch(self, state: ServerState) -> None:
        self.registry.register(_LogCollector(state))
