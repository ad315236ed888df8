"""A workflow shaped by its data: branching on a value and a loop of tasks."""

from ledgerflow import flow, get_run_logger, task


@task
def fetch_orders(day: str) -> list[dict]:
    return [{"id": n, "amount": 20 * n, "country": "NL" if n % 2 else "DE"} for n in range(1, 8)]


@task
def needs_review(order: dict) -> bool:
    return order["amount"] > 100


@task
def review(order: dict) -> str:
    return f"order {order['id']} reviewed"


@task
def book(order: dict) -> str:
    return f"order {order['id']} booked"


@flow
def dynamic_workflow(day: str = "2026-11-25") -> dict[str, int]:
    logger = get_run_logger()
    outcomes = {"reviewed": 0, "booked": 0}
    for order in fetch_orders(day):
        if needs_review(order):
            logger.info(review(order))
            outcomes["reviewed"] += 1
        else:
            book(order)
            outcomes["booked"] += 1
    return outcomes


if __name__ == "__main__":
    print(dynamic_workflow())
