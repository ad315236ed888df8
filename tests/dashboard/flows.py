"""A flow that shows every part of the run page: a retried task, logs at each level, markdown,
table, link and progress artifacts, a subflow. Loaded by entrypoint
(`tests.dashboard.flows:showcase`) by `ledgerflow flow-run execute`, as a worker would."""

from __future__ import annotations

from pathlib import Path

from ledgerflow import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    flow,
    get_run_logger,
    task,
    update_progress_artifact,
)

MARKDOWN = """# Nightly report

Rows loaded: **42**, rejected: *0*. See [the docs](https://example.com/docs) or
[this](javascript:window.__xss=1) which must not become a link.

| region | rows |
|---|---|
| eu | 30 |
| us | <img src=x onerror="window.__xss=1"> |

- first point
- second point
"""


@task(retries=1, retry_delay_seconds=0)
def extract(folder: str) -> list[int]:
    """Fails on its first attempt (leaving a marker), succeeds on the retry."""
    marker = Path(folder) / "extract-failed-once"
    if not marker.exists():
        marker.write_text("")
        raise ConnectionError("the source hung up")
    return [3, 1, 2]


@task
def transform(rows: list[int]) -> list[int]:
    logger = get_run_logger()
    logger.debug("sorting %d rows", len(rows))
    logger.info("transforming")
    logger.warning("one row looked odd")
    return sorted(rows)


@task
def publish(rows: list[int]) -> int:
    create_markdown_artifact(MARKDOWN, key="nightly-report", description="What the run did")
    create_table_artifact([{"region": "eu", "rows": 30}, {"region": "us", "rows": 12}], key="rows-per-region")
    create_link_artifact("https://example.com/dashboards/1", "the warehouse dashboard", key="warehouse")
    progress = create_progress_artifact(10.0, key="publishing")
    update_progress_artifact(progress, 100.0)
    return sum(rows)


@flow
def audit(total: int) -> bool:
    get_run_logger().info("auditing %d", total)
    return total > 0


@flow(log_prints=True)
def showcase(folder: str) -> bool:
    rows = extract(folder)
    cleaned = transform(rows)
    total = publish(cleaned)
    print(f"published {total}")
    return bool(audit(total))
