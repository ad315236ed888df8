"""The demo: a small ETL pipeline with mapping, retries, a subflow and an artifact, then a
summary read back from the event log."""

from __future__ import annotations

import random

from ledgerflow.events import load_settings, open_store
from ledgerflow import create_table_artifact, flow, get_run_context, get_run_logger, task


@task(retries=2, retry_delay_seconds=0.05)
def extract(region: str) -> list[dict]:
    if region == "east" and get_run_context().task_run.attempt == 1:
        raise ConnectionError(f"{region} API did not answer")  # the retry takes care of it
    prices = random.Random(region)
    return [{"region": region, "order": n, "amount": round(prices.uniform(5, 250), 2)} for n in range(25)]


@task
def transform(rows: list[dict]) -> dict:
    return {"region": rows[0]["region"], "orders": len(rows), "revenue": round(sum(r["amount"] for r in rows), 2)}


@task
def load(summaries: list[dict]) -> int:
    create_table_artifact(summaries, key="revenue-by-region", description="Revenue per region")
    return len(summaries)


@flow
def report(regions: list[str]) -> list[dict]:
    extracted = extract.map(regions)
    return [transform(rows) for rows in extracted]


@flow(log_prints=True)
def etl(regions: list[str] = ["north", "south", "east", "west"]) -> int:  # noqa: B006
    summaries = report(regions)
    loaded = load(summaries)
    for summary in summaries:
        print(f"{summary['region']:>6}: {summary['orders']} orders, {summary['revenue']:>9,.2f} revenue")
    get_run_logger().info("loaded %d regions", loaded)
    return loaded


def summarise(flow_run_id: object) -> None:
    store = open_store(load_settings().store_url)
    try:
        events = store.read_all(limit=100_000)
    finally:
        store.close()
    mine = [e for e in events if e.meta.correlation_id == flow_run_id]
    retries = sum(e.type == "task-run.AwaitingRetry" for e in mine)
    tasks = sum(e.type == "task-run.created" for e in mine)
    flows = sum(e.type == "flow-run.created" for e in mine)
    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    print(f"\n{len(mine)} events in the log for this run: {count(flows, 'flow run', 'flow runs')},"
          f" {count(tasks, 'task run', 'task runs')}, {count(retries, 'retry', 'retries')}")
    print("see them with: ledgerflow events tail -n 50")


if __name__ == "__main__":
    state = etl(return_state=True)
    summarise(state.flow_run_id)
