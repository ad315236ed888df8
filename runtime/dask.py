"""`DaskTaskRunner`: submitted and mapped tasks' functions run on a dask.distributed cluster.

    from ledgerflow.runtime.dask import DaskTaskRunner

    @flow(task_runner=DaskTaskRunner())                          # a LocalCluster for the run
    @flow(task_runner=DaskTaskRunner(address="tcp://host:8786"))  # an existing scheduler

It is the `ProcessPoolTaskRunner` with Dask workers instead of local processes: each task run's
engine (its events, retries, caching, replay, timeouts) stays on a thread of the flow's process,
and only the call of the task's function travels, by module and name, with its arguments; what
the call logged, printed or created comes back with its value and is written into the run's
stream. So the same rules hold: tasks are defined at the top level of a module the workers can
import, and their arguments and values are picklable. Needs the `dask` extra
(`pip install 'ledgerflow[dask]'`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from typing import Any

from distributed import Client, LocalCluster

from ledgerflow.runtime.process_pool import ProcessPoolTaskRunner

__all__ = ["DaskTaskRunner"]


class DaskTaskRunner(ProcessPoolTaskRunner):
    """Task runs call their function on a Dask cluster: the scheduler at `address`, or a
    `LocalCluster(**cluster_kwargs)` started for the flow run and closed after it."""

    def __init__(
        self, address: str | None = None, cluster_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(max_workers=1)
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._dask: Executor | None = None
        self._dask_lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.address or f"LocalCluster({', '.join(f'{k}={v!r}' for k, v in self.cluster_kwargs.items())})"
        return f"DaskTaskRunner({where})"

    def fresh(self) -> DaskTaskRunner:
        return DaskTaskRunner(self.address, self.cluster_kwargs, self.client_kwargs)

    def _workers(self) -> Any:
        with self._dask_lock:
            if self._dask is None:
                if self.address is None:
                    self._cluster = LocalCluster(**{"dashboard_address": ":0", **self.cluster_kwargs})
                    self._client = Client(self._cluster, **self.client_kwargs)
                else:
                    self._client = Client(self.address, **self.client_kwargs)
                # pure=False: two calls with equal arguments are two runs, not one cached result.
                self._dask = self._client.get_executor(pure=False)
            return self._dask

    def shutdown(self, wait: bool = True, cancel_queued: bool = False) -> None:
        super().shutdown(wait=wait, cancel_queued=cancel_queued)
        with self._dask_lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = self._dask = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
