"""`ledgerflow automation ...` and `ledgerflow block ...`: rules and the credentials they use.

Both work on the embedded store, and against a server when `LEDGERFLOW_API_URL` is set (then
blocks are created on the server, encrypted with its key, and never come back in full).
Secrets are never printed: blocks are shown masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import orjson
import typer
import yaml
from rich.markup import escape

from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.cli.runs import parse_since
from ledgerflow.events import EventStoreError, StoredEvent, load_settings
from ledgerflow.notifications.backtest import BacktestFiring, backtest_log
from ledgerflow.notifications.blocks import Block, BlockInfo, BlockStore, parse_block
from ledgerflow.notifications.definitions import Automations
from ledgerflow.notifications.errors import NotificationError
from ledgerflow.notifications.model import Automation, AutomationSpec, load_rule
from ledgerflow.notifications.secretbox import SecretBox

__all__ = ["automation_app", "block_app", "engine_app"]

automation_app = typer.Typer(help="Rules on the event log that notify and act on runs.", no_args_is_help=True)
block_app = typer.Typer(help="Credentials (Slack, SMTP, webhooks) that actions use, stored encrypted.", no_args_is_help=True)
create_app = typer.Typer(help="Create a block.", no_args_is_help=True)
block_app.add_typer(create_app, name="create")


class Backend(Protocol):
    """What the commands need: the embedded store, or the API server."""

    def automations(self) -> list[Automation]: ...
    def automation(self, name: str) -> Automation: ...
    def create(self, spec: AutomationSpec) -> Automation: ...
    def update(self, name: str, spec: AutomationSpec) -> Automation: ...
    def toggle(self, name: str, enabled: bool) -> Automation: ...
    def delete(self, name: str) -> None: ...
    def history(self, name: str, limit: int) -> list[StoredEvent]: ...
    def backtest(self, spec: AutomationSpec, since: datetime | None) -> list[BacktestFiring]: ...
    def create_block(self, name: str, block: Block) -> BlockInfo: ...
    def blocks(self) -> list[BlockInfo]: ...
    def block(self, name: str) -> BlockInfo: ...
    def delete_block(self, name: str) -> None: ...


class _Local:
    def __init__(self, automations: Automations) -> None:
        self._automations = automations
        self._blocks: BlockStore | None = None

    def _block_store(self) -> BlockStore:
        if self._blocks is None:
            self._blocks = BlockStore.of(self._automations.store, SecretBox.from_settings(load_settings()))
        return self._blocks

    def automations(self) -> list[Automation]:
        return self._automations.all()

    def automation(self, name: str) -> Automation:
        return self._automations.get(name)

    def create(self, spec: AutomationSpec) -> Automation:
        return self._automations.create(spec)

    def update(self, name: str, spec: AutomationSpec) -> Automation:
        return self._automations.update(name, spec)

    def toggle(self, name: str, enabled: bool) -> Automation:
        return self._automations.enable(name) if enabled else self._automations.disable(name)

    def delete(self, name: str) -> None:
        self._automations.delete(name)

    def history(self, name: str, limit: int) -> list[StoredEvent]:
        return self._automations.history(self._automations.get(name), limit)

    def backtest(self, spec: AutomationSpec, since: datetime | None) -> list[BacktestFiring]:
        return backtest_log(self._automations.store, spec, since=since)

    def create_block(self, name: str, block: Block) -> BlockInfo:
        return self._block_store().create(name, block)

    def blocks(self) -> list[BlockInfo]:
        return self._block_store().list()

    def block(self, name: str) -> BlockInfo:
        return self._block_store().info(name)

    def delete_block(self, name: str) -> None:
        self._block_store().delete(name)


class _Remote:
    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60.0)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise NotificationError(f"the API server at {self._http.base_url} cannot be reached: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = orjson.loads(response.content)["detail"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = response.text[:200]
            raise NotificationError(str(detail))
        return orjson.loads(response.content) if response.content else None

    def automations(self) -> list[Automation]:
        return [Automation.model_validate(a) for a in self._call("GET", "/api/automations")]

    def automation(self, name: str) -> Automation:
        return Automation.model_validate(self._call("GET", f"/api/automations/{name}"))

    def create(self, spec: AutomationSpec) -> Automation:
        return Automation.model_validate(self._call("POST", "/api/automations", spec.model_dump(mode="json")))

    def update(self, name: str, spec: AutomationSpec) -> Automation:
        return Automation.model_validate(self._call("PUT", f"/api/automations/{name}", spec.model_dump(mode="json")))

    def toggle(self, name: str, enabled: bool) -> Automation:
        verb = "enable" if enabled else "disable"
        return Automation.model_validate(self._call("POST", f"/api/automations/{name}/{verb}"))

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/api/automations/{name}")

    def history(self, name: str, limit: int) -> list[StoredEvent]:
        return [StoredEvent.model_validate(e) for e in self._call("GET", f"/api/automations/{name}/firings?limit={limit}")]

    def backtest(self, spec: AutomationSpec, since: datetime | None) -> list[BacktestFiring]:
        body = {"rule": spec.model_dump(mode="json"), "since": since.isoformat() if since else None}
        return [BacktestFiring.model_validate(f) for f in self._call("POST", "/api/automations/test", body)["firings"]]

    def create_block(self, name: str, block: Block) -> BlockInfo:
        body = {"name": name, "type": block.block_type, "fields": block.revealed()}
        return BlockInfo.model_validate(self._call("POST", "/api/blocks", body))

    def blocks(self) -> list[BlockInfo]:
        return [BlockInfo.model_validate(b) for b in self._call("GET", "/api/blocks")]

    def block(self, name: str) -> BlockInfo:
        return BlockInfo.model_validate(self._call("GET", f"/api/blocks/{name}"))

    def delete_block(self, name: str) -> None:
        self._call("DELETE", f"/api/blocks/{name}")


@contextmanager
def backend() -> Iterator[Backend]:
    """The server's API when `LEDGERFLOW_API_URL` is set, else the embedded store; domain
    errors become a one-line message and exit 1."""
    settings = load_settings()
    try:
        if settings.api_url:
            remote = _Remote(settings.api_url, settings.api_key)
            try:
                yield remote
            finally:
                remote.close()
        else:
            with opened_store() as store:
                yield _Local(Automations(store, actor="cli"))
    except (NotificationError, EventStoreError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _rule(path: Path) -> AutomationSpec:
    try:
        return load_rule(path)
    except NotificationError as exc:
        fail(str(exc))


RuleFile = Annotated[Path, typer.Option("--file", "-f", help="The rule: a .yaml, .yml or .json file.")]
NameArg = Annotated[str, typer.Argument(help="The automation's name (or id).")]


@automation_app.command("create")
def create(file: RuleFile) -> None:
    """Create an automation from a rule file (refused if its name is taken)."""
    spec = _rule(file)
    with backend() as api:
        made = api.create(spec)
    out.print(f"created automation [bold]{escape(made.name)}[/] ({made.id}){'' if made.enabled else ', disabled'}")


@automation_app.command("update")
def update(name: NameArg, file: RuleFile) -> None:
    """Replace an automation's rule (it keeps its id and history)."""
    spec = _rule(file)
    with backend() as api:
        made = api.update(name, spec)
    out.print(f"updated automation [bold]{escape(made.name)}[/] ({made.id})")


@automation_app.command("ls")
def ls(as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False) -> None:
    """Every automation."""
    with backend() as api:
        found = api.automations()
    if as_json:
        out.print_json(orjson.dumps([a.model_dump(mode="json") for a in found]).decode())
        return
    grid = table("name", "enabled", "trigger", "actions", "id")
    for automation in found:
        trigger = automation.trigger
        what = f"{trigger.posture}: {', '.join(trigger.match.events)}"
        if trigger.threshold > 1 or trigger.within:
            what += f" (>= {trigger.threshold} in {trigger.within:g}s)" if trigger.posture == "reactive" else ""
        grid.add_row(escape(automation.name), "yes" if automation.enabled else "[dim]no[/]", escape(what),
                     escape(", ".join(a.type for a in automation.actions)), str(automation.id))
    out.print(grid if found else "[dim]no automations[/]")


def _outcome_line(event: StoredEvent) -> tuple[str, str, str]:
    data = event.data
    if event.type == "automation.triggered":
        cause = data.get("triggering_event") or {}
        return "fired", f"on {cause.get('type')} ({data.get('bucket') or 'all'})", str(data.get("flow_run_id") or "")
    action = f"{data.get('action_index')}: {data.get('action_type')}"
    if event.type == "action.triggered":
        return "  action", action + (f" ({data['render_error']})" if data.get("render_error") else ""), ""
    if event.type == "action.succeeded":
        return "  [green]succeeded[/]", f"{action} after {data.get('attempts')} attempt(s)", str(data.get("detail") or "")
    return "  [red]failed[/]", f"{action} after {data.get('attempts')} attempt(s)", str(data.get("error") or "")


@automation_app.command("inspect")
def inspect(
    name: NameArg,
    limit: Annotated[int, typer.Option(help="Firings and outcomes to show.")] = 30,
) -> None:
    """An automation's rule, and its recent firings and action outcomes."""
    with backend() as api:
        automation = api.automation(name)
        history = api.history(name, limit)
    out.print(f"[bold]{escape(automation.name)}[/] ({automation.id}) "
              f"{'[green]enabled[/]' if automation.enabled else '[dim]disabled[/]'}")
    rule = automation.model_dump(mode="json", exclude={"id", "created", "updated"}, exclude_none=True)
    out.print(escape(yaml.safe_dump(rule, sort_keys=False, allow_unicode=True)).rstrip())
    if not history:
        out.print("[dim]no firings yet[/]")
        return
    grid = table("when", "what", "", "detail", title="recent firings")
    for event in history:
        what, text, detail = _outcome_line(event)
        grid.add_row(event.occurred.strftime("%Y-%m-%d %H:%M:%S"), what, escape(text), escape(detail))
    out.print(grid)


@automation_app.command("enable")
def enable(name: NameArg) -> None:
    """Enable an automation."""
    with backend() as api:
        made = api.toggle(name, True)
    out.print(f"automation [bold]{escape(made.name)}[/] enabled")


@automation_app.command("disable")
def disable(name: NameArg) -> None:
    """Disable an automation (it stops firing; its history stays)."""
    with backend() as api:
        made = api.toggle(name, False)
    out.print(f"automation [bold]{escape(made.name)}[/] disabled")


@automation_app.command("delete")
def delete(name: NameArg) -> None:
    """Delete an automation (its history stays in the log)."""
    with backend() as api:
        api.delete(name)
    out.print(f"automation [bold]{escape(name)}[/] deleted")


@automation_app.command("test")
def test(
    file: Annotated[Path, typer.Argument(help="The rule to try: a .yaml, .yml or .json file.")],
    since: Annotated[str | None, typer.Option(help="Events from then on: 30d, 12h, or an ISO time (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Backtest a rule over the stored events: when it would have fired and what it would have
    sent. Nothing is sent and nothing is written."""
    spec = _rule(file)
    start = parse_since(since) if since else None
    with backend() as api:
        firings = api.backtest(spec, start)
    if as_json:
        out.print_json(orjson.dumps([f.model_dump(mode="json") for f in firings]).decode())
        return
    out.print(f"[bold]{escape(spec.name)}[/] would have fired {len(firings)} time(s)"
              + (f" since {start:%Y-%m-%d %H:%M}" if start else ""))
    for firing in firings:
        cause = firing.triggering_event
        out.print(f"\n[bold]{firing.at:%Y-%m-%d %H:%M:%S}[/] on {escape(cause['type'])} "
                  f"[dim]{escape(cause['stream'])}[/]" + (f" (bucket {escape(firing.bucket)})" if firing.bucket else ""))
        for action in firing.actions:
            label = f"  {action['index']}: {action['type']}" + (f" via {action['block']}" if action.get("block") else "")
            if "error" in action:
                out.print(f"{escape(label)}: [red]{escape(action['error'])}[/]")
                continue
            out.print(f"{escape(label)}: {escape(_summary(action['message']))}")


def _summary(message: dict[str, Any]) -> str:
    for key in ("text", "subject", "body", "flow_run_id"):
        if message.get(key):
            text = str(message[key]).strip().replace("\n", " ")
            return text if len(text) <= 200 else text[:199] + "…"
    return orjson.dumps(message).decode()


def _show_block(info: BlockInfo) -> None:
    out.print(f"[bold]{escape(info.name)}[/] ({info.type})")
    for key, value in info.fields.items():
        if value not in (None, {}, []):
            out.print(f"  {key}: {escape(str(value))}")


def _make_block(name: str, kind: str, fields: dict[str, Any]) -> None:
    try:
        block = parse_block(kind, {k: v for k, v in fields.items() if v is not None})
    except NotificationError as exc:
        fail(str(exc))
    with backend() as api:
        info = api.create_block(name, block)
    out.print("created block:")
    _show_block(info)


BlockNameArg = Annotated[str, typer.Argument(help="The block's name (letters, digits, '.', '-', '_').")]


@create_app.command("slack-webhook")
def create_slack(
    name: BlockNameArg,
    url: Annotated[str, typer.Option(help="The incoming-webhook URL (https://hooks.slack.com/services/...).")],
) -> None:
    """A Slack incoming webhook."""
    _make_block(name, "slack-webhook", {"url": url})


@create_app.command("smtp")
def create_smtp(
    name: BlockNameArg,
    host: Annotated[str, typer.Option(help="The mail server.")],
    port: Annotated[int | None, typer.Option(help="Default: 587 (STARTTLS), 465 (TLS), 25 (neither).")] = None,
    username: Annotated[str | None, typer.Option(help="Login name.")] = None,
    password: Annotated[str | None, typer.Option(help="Login password.")] = None,
    starttls: Annotated[bool, typer.Option("--starttls", help="Upgrade a plain connection (the default).")] = False,
    tls: Annotated[bool, typer.Option("--tls", help="TLS from the first byte (SMTPS).")] = False,
    no_tls: Annotated[bool, typer.Option("--no-tls", help="No encryption at all.")] = False,
    sender: Annotated[str | None, typer.Option("--from", help="The From address (default: the username).")] = None,
    ca_file: Annotated[str | None, typer.Option(help="A CA bundle to trust for this server.")] = None,
) -> None:
    """An SMTP server and its login."""
    if starttls + tls + no_tls > 1:
        fail("give at most one of --starttls, --tls and --no-tls")
    security = "tls" if tls else "none" if no_tls else "starttls"
    _make_block(name, "smtp", {"host": host, "port": port, "username": username, "password": password,
                               "security": security, "from_address": sender, "ca_file": ca_file})


@create_app.command("webhook")
def create_webhook(
    name: BlockNameArg,
    url: Annotated[str, typer.Option(help="Where deliveries go.")],
    secret: Annotated[str, typer.Option(help="Signs each delivery (HMAC-SHA256); at least 8 characters.")],
    header: Annotated[list[str] | None, typer.Option(help="Extra header K=V (repeatable).")] = None,
    method: Annotated[str, typer.Option(help="POST, PUT, PATCH, DELETE or GET.")] = "POST",
) -> None:
    """Any HTTP endpoint; deliveries are signed with the secret."""
    headers: dict[str, str] = {}
    for item in header or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--header {item!r} must look like Name=value")
        headers[key.strip()] = value
    _make_block(name, "webhook", {"url": url, "secret": secret, "headers": headers, "method": method.upper()})


@block_app.command("ls")
def block_ls() -> None:
    """Every block, secrets masked."""
    with backend() as api:
        found = api.blocks()
    grid = table("name", "type", "details", "updated")
    for info in found:
        details = ", ".join(f"{k}={v}" for k, v in info.fields.items() if v not in (None, {}, []))
        grid.add_row(escape(info.name), info.type, escape(details), info.updated.strftime("%Y-%m-%d %H:%M"))
    out.print(grid if found else "[dim]no blocks[/]")


@block_app.command("inspect")
def block_inspect(name: BlockNameArg) -> None:
    """One block, secrets masked."""
    with backend() as api:
        info = api.block(name)
    _show_block(info)


@block_app.command("delete")
def block_delete(name: BlockNameArg) -> None:
    """Delete a block (actions naming it then fail)."""
    with backend() as api:
        api.delete_block(name)
    out.print(f"block [bold]{escape(name)}[/] deleted")


engine_app = typer.Typer(help="The automation engine.", no_args_is_help=True)


@engine_app.command("run")
def run_engine() -> None:
    """Run the automation engine here until Ctrl-C (the server runs one too, unless told not
    to): evaluate every enabled automation over the log and deliver what fires. Works on the
    database (LEDGERFLOW_DATABASE_URL), not through a server."""
    import signal
    import threading

    from ledgerflow.events.gcpause import freeze_startup_heap
    from ledgerflow.notifications.service import automation_service

    settings = load_settings()
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with opened_store() as store:
        try:
            service = automation_service(store, SecretBox.from_settings(settings))
            service.start()
            freeze_startup_heap()
        except (NotificationError, EventStoreError) as exc:
            fail(str(exc).splitlines()[0])
        try:
            out.print("automation engine running; Ctrl-C to stop", highlight=False)
            stopped.wait()
        finally:
            service.stop()
