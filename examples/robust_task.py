"""Retries with a list of backoff delays, and a cached task whose cache expires."""

from datetime import timedelta

from ledgerflow import flow, get_run_logger, task, task_input_hash

attempts = {"count": 0}


@task(retries=3, retry_delay_seconds=[0.1, 0.2, 0.4], retry_jitter_factor=0.2)
def unreliable_download(url: str) -> str:
    attempts["count"] += 1
    if attempts["count"] < 3:
        raise ConnectionError(f"{url} timed out (attempt {attempts['count']})")
    return f"<data from {url}>"


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(minutes=10))
def expensive_parse(raw: str) -> int:
    get_run_logger().info("parsing for real")
    return len(raw)


@flow
def robust_task(url: str = "https://example.invalid/export.csv") -> int:
    raw = unreliable_download(url)
    first = expensive_parse(raw)
    again = expensive_parse(raw)  # served from the cache
    return first + again


if __name__ == "__main__":
    print(robust_task())
