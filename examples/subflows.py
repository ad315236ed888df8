"""Ingestion -> transformation -> load, each a flow of its own, called from a parent flow."""

from ledgerflow import flow, task


@task
def extract(source: str) -> list[dict]:
    return [{"source": source, "value": n} for n in range(5)]


@flow
def ingestion(sources: list[str]) -> list[dict]:
    rows: list[dict] = []
    for source in sources:
        rows += extract(source)
    return rows


@task
def clean(row: dict) -> dict:
    return {**row, "value": row["value"] * 10}


@flow
def transformation(rows: list[dict]) -> list[dict]:
    return [future.result() for future in clean.map(rows)]


@task
def write(rows: list[dict]) -> int:
    return len(rows)


@flow
def load(rows: list[dict]) -> int:
    return write(rows)


@flow
def subflows(sources: list[str] = ["crm", "billing"]) -> int:  # noqa: B006 - a flow parameter default
    return load(transformation(ingestion(sources)))


if __name__ == "__main__":
    print(f"loaded {subflows()} rows")
