"""When something goes wrong, leave an artifact that says what, next to the failed run."""

from ledgerflow import create_markdown_artifact, create_table_artifact, flow, task


@task
def validate(rows: list[dict]) -> list[dict]:
    bad = [row for row in rows if row["amount"] < 0]
    if bad:
        create_table_artifact(bad, key="rejected-rows", description="rows with a negative amount")
        create_markdown_artifact(
            f"# Validation failed\n\n{len(bad)} of {len(rows)} rows have a negative amount.",
            key="validation-report",
        )
        raise ValueError(f"{len(bad)} invalid rows")
    return rows


@flow
def debugging(rows: list[dict] | None = None) -> int:
    rows = rows if rows is not None else [{"id": 1, "amount": 5}, {"id": 2, "amount": -3}]
    return len(validate(rows))


if __name__ == "__main__":
    state = debugging(return_state=True)
    print(f"{state.name}: {state.message}")
