"""Async tasks run concurrently with asyncio.gather inside an async flow."""

import asyncio
import time

from ledgerflow import flow, get_run_logger, task


@task
async def fetch(city: str) -> dict:
    await asyncio.sleep(0.2)  # stands for a network call
    return {"city": city, "temperature": len(city) * 3}


@flow
async def async_concurrency(cities: list[str] = ["Amsterdam", "Lisbon", "Oslo", "Rome"]) -> list[dict]:  # noqa: B006
    started = time.perf_counter()
    readings = await asyncio.gather(*(fetch(city) for city in cities))
    get_run_logger().info("%d readings in %.2fs", len(readings), time.perf_counter() - started)
    return list(readings)


if __name__ == "__main__":
    print(asyncio.run(async_concurrency()))
