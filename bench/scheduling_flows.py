"""The flow `python -m bench.scheduling` runs (loaded by entrypoint `bench/scheduling_flows.py:quick`)."""

from __future__ import annotations

from ledgerflow import flow


@flow(persist_result=False)
def quick() -> int:
    return 1
