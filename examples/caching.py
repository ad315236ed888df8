"""Caching: a task whose `cache_key_fn` names its inputs runs once; later calls with the same
inputs, in this run or the next one, take the stored result (state `Cached`) until it expires."""

from datetime import timedelta

from ledgerflow import flow, get_run_logger, task, task_input_hash


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def geocode(city: str) -> tuple[float, float]:
    get_run_logger().info("looking up %s for real", city)
    return round(len(city) * 7.1, 1), round(len(city) * 3.3, 1)


@flow
def caching(cities: list[str]) -> list[tuple[float, float]]:
    return [geocode(city) for city in cities]


if __name__ == "__main__":
    first = caching(["Utrecht", "Ghent"], return_state=True)
    again = caching(["Ghent", "Utrecht", "Bruges"], return_state=True)  # two of three cached
    print(first.result())
    print(again.result())
