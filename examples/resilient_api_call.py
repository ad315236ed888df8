"""An API call that retries only on errors worth retrying, and aborts on the rest."""

from ledgerflow import Abort, flow, get_run_logger, task

responses = iter([503, 503, 200])


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def retry_on_server_errors(task, task_run, state) -> bool:
    error = state.exception
    return isinstance(error, HttpError) and error.status >= 500


@task(retries=4, retry_delay_seconds=0.05, retry_condition_fn=retry_on_server_errors)
def call_api(endpoint: str, token: str | None) -> dict:
    if token is None:
        raise Abort("no API token: retrying cannot help")
    status = next(responses)
    if status != 200:
        raise HttpError(status)
    return {"endpoint": endpoint, "status": status}


@flow
def resilient_api_call(token: str | None = "secret") -> dict:
    result = call_api("/v1/orders", token)
    get_run_logger().info("got %s", result)
    return result


if __name__ == "__main__":
    print(resilient_api_call())
    print(resilient_api_call(token=None, return_state=True).message)
