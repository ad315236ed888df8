"""What an automation is: a named rule, a trigger and its actions (the shape of a rule file,
of the API's body and of the `automation.created` event's data).

Triggers are a union on `posture` (reactive, the default; proactive) and actions a union on
`type`; templates are checked when a rule is validated, so a bad one is refused at creation
with the field it is in (`actions.0.slack.text: template error (line 1): ...`).

    name: etl-failures
    trigger:
      posture: reactive
      match: {events: ["flow-run.Failed"], flow_name: nightly-etl}
      threshold: 1
      within: 0
      cooldown: 600
    actions:
      - {type: slack, block: ops-slack, text: "{{ flow_run.flow_name }} failed"}
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from ledgerflow.notifications.errors import RuleError, describe_validation
from ledgerflow.notifications.templates import check, check_tree

__all__ = [
    "Action",
    "Automation",
    "AutomationSpec",
    "CancelFlowRunAction",
    "EmailAction",
    "Match",
    "ProactiveTrigger",
    "ReactiveTrigger",
    "ReplayFlowRunAction",
    "RunDeploymentAction",
    "SlackAction",
    "Trigger",
    "WebhookAction",
    "load_rule",
    "parse_rule",
]

_PATTERN = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._*-]{0,199}")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def _duration(value: Any) -> Any:
    """Seconds from a number or a string: `90`, `90s`, `10m`, `2h`, `1d`."""
    if isinstance(value, str):
        found = _DURATION.fullmatch(value)
        if not found:
            raise ValueError(f"{value!r} is not a duration: give seconds, or a number with s, m, h or d")
        return float(found.group(1)) * _UNITS[found.group(2)]
    return value


def _type_pattern(value: str) -> str:
    if not _PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an event type pattern: letters, digits, '.', '-', '_' and '*' wildcards"
        )
    return value


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value.strip()):
        raise ValueError(f"{value!r} is not an email address")
    return value.strip()


def _html(value: str) -> str:
    return check(value, html=True)


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0, le=366 * 86400)]
TypePattern = Annotated[str, AfterValidator(_type_pattern)]
Patterns = Annotated[list[TypePattern], BeforeValidator(_listify), Field(min_length=1, max_length=100)]
Values = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], BeforeValidator(_listify),
                   Field(min_length=1, max_length=100)]
TextTemplate = Annotated[str, AfterValidator(check)]
HtmlTemplate = Annotated[str, AfterValidator(_html)]
BlockName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
EmailAddress = Annotated[str, AfterValidator(_email)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Which events count: type patterns (`flow-run.*`) and, optionally, filters on the flow
    run the event belongs to (from its `flow-run.created`): every filter given must hold; a
    filter's values are alternatives (`*` wildcards allowed), except `tags`, all of which the
    run must have."""

    events: Patterns
    flow_name: Values | None = None
    tags: Values | None = None
    deployment: Values | None = None
    work_pool: Values | None = None

    @property
    def filters_runs(self) -> bool:
        return any(v is not None for v in (self.flow_name, self.tags, self.deployment, self.work_pool))


class ReactiveTrigger(_Strict):
    """Fires when at least `threshold` matching events occur within `within` seconds
    (0: no time limit; with the default threshold of 1, every matching event)."""

    posture: Literal["reactive"] = "reactive"
    match: Match
    threshold: int = Field(default=1, ge=1, le=100_000)
    within: Seconds = 0.0
    for_each: Literal["run", "flow"] | None = None
    cooldown: Seconds = 0.0
    """Seconds after a firing during which the rule (per bucket) does not fire again."""


class ProactiveTrigger(_Strict):
    """Fires when fewer than `threshold` matching events occur within `within` seconds after
    an `after` event (a run that entered Running and did not complete in time)."""

    posture: Literal["proactive"]
    match: Match
    after: Patterns
    threshold: int = Field(default=1, ge=1, le=100_000)
    within: Seconds
    for_each: Literal["run", "flow"] | None = "run"
    cooldown: Seconds = 0.0

    @field_validator("within")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a proactive trigger needs a window: within must be more than 0 seconds")
        return value


def _posture(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("posture", "reactive"))
    return str(getattr(value, "posture", "reactive"))


Trigger = Annotated[
    Annotated[ReactiveTrigger, Tag("reactive")] | Annotated[ProactiveTrigger, Tag("proactive")],
    Discriminator(_posture, custom_error_type="posture",
                  custom_error_message="posture must be 'reactive' or 'proactive'"),
]


class SlackAction(_Strict):
    """Post to a Slack incoming webhook (block type `slack-webhook`)."""

    type: Literal["slack"]
    block: BlockName
    text: TextTemplate
    blocks: list[dict[str, Any]] | None = None
    """Slack layout blocks; every string in them is a template."""

    @field_validator("blocks")
    @classmethod
    def _templates(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        return check_tree(value) if value is not None else None


class EmailAction(_Strict):
    """Send an email through an SMTP server (block type `smtp`): plain text, and HTML if given."""

    type: Literal["email"]
    block: BlockName
    to: Annotated[list[EmailAddress], BeforeValidator(_listify), Field(min_length=1, max_length=100)]
    cc: Annotated[list[EmailAddress], BeforeValidator(_listify), Field(max_length=100)] = []
    subject: TextTemplate = "ledgerflow: {{ automation.name }} ({{ event.type }})"
    body: TextTemplate = (
        "{{ automation.name }} fired on {{ event.type }}"
        "{% if flow_run %} of flow run {{ flow_run.run_name }} ({{ flow_run.flow_name }}){% endif %}.\n"
    )
    html: HtmlTemplate | None = None


class WebhookAction(_Strict):
    """Send a templated body to the block's URL, signed with the block's secret."""

    type: Literal["webhook"]
    block: BlockName
    body: TextTemplate = (
        '{{ {"automation": automation.name, "event": event, "flow_run": flow_run} | tojson }}'
    )
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] | None = None
    """None: the block's method (POST unless the block says otherwise)."""
    headers: dict[Annotated[str, Field(min_length=1, max_length=200)], TextTemplate] = {}


class ReplayFlowRunAction(_Strict):
    """Request a replay of the triggering flow run (a new run reusing its completed tasks)."""

    type: Literal["replay-flow-run"]
    max_replays: int = Field(default=1, ge=1, le=100)
    """Replays allowed per original run, counted along the chain of replays of replays."""


class CancelFlowRunAction(_Strict):
    """Cancel the triggering flow run."""

    type: Literal["cancel-flow-run"]
    message: TextTemplate | None = None


class RunDeploymentAction(_Strict):
    """Request a run of a deployment (`flow/deployment` or its id); every string among the
    parameters is a template, so a run can be told what fired it."""

    type: Literal["run-deployment"]
    deployment: Annotated[str, Field(min_length=1, max_length=400)]
    parameters: dict[str, Any] = {}

    @field_validator("parameters")
    @classmethod
    def _templates(cls, value: dict[str, Any]) -> dict[str, Any]:
        checked: dict[str, Any] = check_tree(value)
        return checked


Action = Annotated[
    SlackAction | EmailAction | WebhookAction | ReplayFlowRunAction | CancelFlowRunAction
    | RunDeploymentAction,
    Field(discriminator="type"),
]


class AutomationSpec(_Strict):
    """A rule as written in a file or sent to the API."""

    name: Annotated[str, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
                    Field(pattern=_NAME.pattern)]
    description: str = Field(default="", max_length=2000)
    enabled: bool = True
    trigger: Trigger
    actions: list[Action] = Field(min_length=1, max_length=20)


class Automation(AutomationSpec):
    """A stored automation: its rule, its id and when it was created and last changed."""

    id: UUID
    created: datetime
    updated: datetime

    def spec(self) -> AutomationSpec:
        return AutomationSpec.model_validate(self.model_dump(exclude={"id", "created", "updated"}))


def parse_rule(text: str | bytes, *, source: str = "rule") -> AutomationSpec:
    """A rule from JSON or YAML text; RuleError naming the field when it is malformed."""
    raw = text.decode() if isinstance(text, bytes) else text
    try:
        body: Any = orjson.loads(raw) if source.endswith(".json") else yaml.safe_load(raw)
    except orjson.JSONDecodeError as exc:
        raise RuleError(f"{source} is not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{source} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(body, dict):
        raise RuleError(f"{source} must hold one rule: a mapping with name, trigger and actions")
    return validate_rule(body)


def validate_rule(body: Any) -> AutomationSpec:
    try:
        return AutomationSpec.model_validate(body)
    except ValidationError as exc:
        raise RuleError(describe_validation(exc)) from None


def load_rule(path: str | Path) -> AutomationSpec:
    """A rule from a `.yaml`, `.yml` or `.json` file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RuleError(f"cannot read {path}: {exc.strerror}") from None
    return parse_rule(text, source=path.name)
