"""Futures: `.submit()` runs a task concurrently, `.map()` fans one out over a list
(`unmapped` passes a value whole), `wait` and `as_completed` gather them."""

from ledgerflow import as_completed, flow, task, unmapped, wait


@task
def price(item: str, currency: str) -> tuple[str, int]:
    return item, len(item) * 10 if currency == "EUR" else len(item) * 11


@task
def stock(item: str) -> int:
    return len(item) % 3


@flow
def futures_and_mapping(items: list[str] = ["apple", "pear", "fig"]) -> dict:  # noqa: B006
    prices = price.map(items, currency=unmapped("EUR"))  # one task run per item
    counts = [stock.submit(item) for item in items]  # started at once, run concurrently
    wait(counts)
    in_stock = {item: future.result() for item, future in zip(items, counts)}
    priced = dict(future.result() for future in as_completed(prices))
    return {item: (priced[item], in_stock[item]) for item in items}


if __name__ == "__main__":
    print(futures_and_mapping())
