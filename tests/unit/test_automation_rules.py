"""Rule files and templates: the issue's example parses; malformed rules are refused with a
message naming the field; templates are sandboxed and checked at creation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from ledgerflow.events import EventMeta, StoredEvent
from ledgerflow.notifications import RuleError, load_rule, parse_rule
from ledgerflow.notifications.context import flow_run_view
from ledgerflow.notifications.errors import TemplateRenderError
from ledgerflow.notifications.evaluation import Evaluator
from ledgerflow.notifications.matching import RunFacts, resource_matches, run_id_of
from ledgerflow.notifications.model import Automation, Match, ProactiveTrigger, ReactiveTrigger
from ledgerflow.notifications.signing import sign, verify
from ledgerflow.notifications.templates import check, render

EXAMPLE = """
name: etl-failures
description: page on-call when the nightly ETL fails
enabled: true
trigger:
  posture: reactive
  match:
    events: ["flow-run.Failed", "flow-run.Crashed"]
    flow_name: nightly-etl
  threshold: 1
  within: 0
  for_each: run
  cooldown: 600
actions:
  - {type: slack, block: ops-slack, text: "{{ flow_run.flow_name }} failed: {{ event.data.message }}"}
  - {type: email, block: ops-smtp, to: ["oncall@example.com"], subject: "...", body: "..."}
  - {type: webhook, block: pager, body: '{"run": "{{ flow_run.id }}"}'}
  - {type: replay-flow-run, max_replays: 2}
"""


def test_the_issue_example_parses() -> None:
    rule = parse_rule(EXAMPLE)
    assert rule.name == "etl-failures"
    assert isinstance(rule.trigger, ReactiveTrigger)
    assert rule.trigger.match.flow_name == ["nightly-etl"]
    assert rule.trigger.cooldown == 600
    assert [a.type for a in rule.actions] == ["slack", "email", "webhook", "replay-flow-run"]


def test_json_and_yaml_files(tmp_path: Path) -> None:
    rule = parse_rule(EXAMPLE)
    (tmp_path / "rule.json").write_text(rule.model_dump_json())
    (tmp_path / "rule.yaml").write_text(EXAMPLE)
    assert load_rule(tmp_path / "rule.json") == load_rule(tmp_path / "rule.yaml") == rule


def test_proactive_rule_with_durations() -> None:
    rule = parse_rule(EXAMPLE.replace("posture: reactive", "posture: proactive\n  after: [flow-run.Running]")
                      .replace("within: 0", "within: 10m").replace('"flow-run.Failed", "flow-run.Crashed"', "flow-run.Completed"))
    assert isinstance(rule.trigger, ProactiveTrigger)
    assert rule.trigger.within == 600 and rule.trigger.after == ["flow-run.Running"]


@pytest.mark.parametrize(("change", "field"), [
    (("threshold: 1", "threshold: 0"), "trigger.reactive.threshold"),
    (("cooldown: 600", "cooldown: soon"), "trigger.reactive.cooldown"),
    (("posture: reactive", "posture: sometimes"), "trigger: posture must be"),
    (("posture: reactive", "posture: proactive"), "trigger.proactive.after: Field required"),
    (("for_each: run", "for_each: task"), "trigger.reactive.for_each"),
    (('events: ["flow-run.Failed", "flow-run.Crashed"]', "events: []"), "trigger.reactive.match.events"),
    (('events: ["flow-run.Failed", "flow-run.Crashed"]', 'events: ["flow run failed"]'), "trigger.reactive.match.events.0"),
    (("{{ flow_run.flow_name }}", "{{ flow_run.flow_name "), "actions.0.slack.text: template error"),
    (("{{ flow_run.flow_name }}", "{{ flw.flow_name }}"), "actions.0.slack.text: template uses unknown name(s) flw"),
    (("{{ event.data.message }}", "{{ event | nosuchfilter }}"), "actions.0.slack.text: template error"),
    (('to: ["oncall@example.com"]', "to: [not-an-address]"), "actions.1.email.to.0"),
    (("type: webhook, block: pager", "type: webhook, block: 'bad name'"), "actions.2.webhook.block"),
    (("{type: replay-flow-run, max_replays: 2}", "{type: replay-flow-run, max_replays: 0}"), "actions.3.replay-flow-run.max_replays"),
    (("{type: replay-flow-run, max_replays: 2}", "{type: run-deployment, deployment: ''}"), "actions.3.run-deployment.deployment"),
    (("{type: replay-flow-run, max_replays: 2}", "{type: run-deployment, deployment: etl/x, parameters: {a: '{{ x'}}"),
     "actions.3.run-deployment.parameters: template error"),
    (("{type: replay-flow-run, max_replays: 2}", "{type: page-someone}"), "actions.3"),
    (("enabled: true", "enabled: true\nsurprise: 1"), "surprise: Extra inputs are not permitted"),
    (("name: etl-failures", "name: ''"), "name"),
])
def test_malformed_rules_name_the_field(change: tuple[str, str], field: str) -> None:
    assert change[0] in EXAMPLE
    with pytest.raises(RuleError) as caught:
        parse_rule(EXAMPLE.replace(*change))
    assert field in str(caught.value)


def test_not_a_rule() -> None:
    with pytest.raises(RuleError, match="not valid YAML"):
        parse_rule("name: [unclosed")
    with pytest.raises(RuleError, match="not valid JSON"):
        parse_rule("{", source="rule.json")
    with pytest.raises(RuleError, match="must hold one rule"):
        parse_rule("- a\n- b")


CONTEXT = {"event": {"type": "flow-run.Failed", "data": {"message": "boom <b>"}}, "flow_run": None,
           "automation": {"name": "etl"}}


def test_templates_render_and_missing_attributes_are_empty() -> None:
    assert render("{{ automation.name }}: {{ event.data.message }}", CONTEXT) == "etl: boom <b>"
    assert render("[{{ flow_run.flow_name }}]", CONTEXT) == "[]"
    assert render("{{ event.data | tojson }}", CONTEXT) == '{"message":"boom <b>"}'
    assert render("<p>{{ event.data.message }}</p>", CONTEXT, html=True) == "<p>boom &lt;b&gt;</p>"


@pytest.mark.parametrize("source", [
    "{{ event.__class__.__mro__ }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ event.data.update({'x': 1}) }}",
])
def test_the_sandbox_refuses_internals_and_mutation(source: str) -> None:
    check(source)  # compiles: the sandbox refuses while rendering
    with pytest.raises(TemplateRenderError):
        render(source, CONTEXT)


def _event(kind: str, data: dict[str, object], stream: str = "flow-run-r1", position: int = 1) -> StoredEvent:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return StoredEvent(id=uuid4(), type=kind, stream=stream, occurred=now, data=data, meta=EventMeta(),
                       position=position, stream_position=position, recorded=now, hash="", cursor=f"0.{position}")


def test_resource_filters() -> None:
    run = RunFacts.from_created("r1", {"flow_name": "nightly-etl", "tags": ["prod", "etl"], "deployment_id": "d1",
                                       "work_pool": "pool-a"})
    assert resource_matches(Match(events=["*"]), None)
    assert resource_matches(Match(events=["*"], flow_name=["nightly-*"]), run)
    assert not resource_matches(Match(events=["*"], flow_name=["other"]), run)
    assert resource_matches(Match(events=["*"], tags=["prod", "etl"]), run)
    assert not resource_matches(Match(events=["*"], tags=["prod", "dev"]), run)
    assert resource_matches(Match(events=["*"], deployment=["d1"], work_pool=["pool-*"]), run)
    assert not resource_matches(Match(events=["*"], work_pool=["pool-b"]), run)
    assert not resource_matches(Match(events=["*"], flow_name=["nightly-etl"]), None)


def test_run_of_an_event() -> None:
    assert run_id_of(_event("flow-run.Failed", {"flow_run_id": "r9"})) == "r9"
    assert run_id_of(_event("log.emitted", {})) == "r1"
    assert run_id_of(_event("custom.thing", {}, stream="orders")) is None


def test_flow_run_view_from_the_stream() -> None:
    events = [
        _event("flow-run.created", {"flow_run_id": "r1", "flow_name": "etl", "run_name": "etl-1", "tags": ["t"],
                                    "parameters": {"n": 1}}, position=1),
        _event("flow-run.Running", {"flow_run_id": "r1", "state_type": "RUNNING", "state_name": "Running"}, position=2),
        _event("task-run.created", {"flow_run_id": "r1", "task_run_id": "t1", "task_name": "extract", "task_key": "k",
                                    "run_name": "extract-0", "occurrence": 0}, position=3),
        _event("task-run.Failed", {"flow_run_id": "r1", "task_run_id": "t1", "state_type": "FAILED",
                                   "state_name": "Failed", "error": {"type": "ValueError", "message": "bad"}}, position=4),
        _event("flow-run.Failed", {"flow_run_id": "r1", "state_type": "FAILED", "state_name": "Failed",
                                   "error": {"type": "ValueError", "message": "bad"}}, position=5),
    ]
    view = flow_run_view("r1", events)
    assert view is not None
    assert (view["id"], view["flow_name"], view["run_name"], view["state_name"]) == ("r1", "etl", "etl-1", "Failed")
    assert view["error"] == "ValueError: bad" and view["tags"] == ["t"] and view["parameters"] == {"n": 1}
    assert [(t["task_name"], t["state_name"]) for t in view["task_runs"]] == [("extract", "Failed")]
    assert [s["state_name"] for s in view["states"]] == ["Running", "Failed", "Failed"]


def test_signatures() -> None:
    body = b'{"a": 1}'
    signature = sign("s3cret", 1_700_000_000, body)
    assert verify("s3cret", "1700000000", body, signature, now=1_700_000_100)
    assert not verify("s3cret", "1700000000", body, signature, now=1_700_001_000)
    assert not verify("s3cret", "nope", body, signature)


def _automation(text: str) -> Automation:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return Automation.model_validate({**parse_rule(text).model_dump(), "id": uuid4(), "created": now, "updated": now})


def test_the_evaluator_follows_rule_changes_for_types_it_has_seen() -> None:
    on_failed = _automation('name: a\ntrigger: {match: {events: ["flow-run.Failed"]}}\nactions: [{type: slack, block: x, text: t}]')
    evaluator = Evaluator([on_failed])
    assert evaluator.patterns() == {"flow-run.Failed"}
    assert [f.automation.id for f in evaluator.observe(_event("flow-run.Failed", {}), None)] == [on_failed.id]
    assert evaluator.observe(_event("flow-run.Crashed", {}, position=2), None) == []
    assert not evaluator.needs_run(_event("flow-run.Crashed", {}))

    on_crashed = _automation('name: b\ntrigger: {match: {events: ["flow-run.C*"], flow_name: etl}}\n'
                             'actions: [{type: slack, block: x, text: t}]')
    evaluator.put(on_crashed)  # a type seen before now reaches a rule, one that filters runs
    assert evaluator.patterns() == {"flow-run.Failed", "flow-run.C*"}
    assert evaluator.needs_run(_event("flow-run.Crashed", {}))
    etl = RunFacts.from_created("r1", {"flow_name": "etl"})
    assert [f.automation.id for f in evaluator.observe(_event("flow-run.Crashed", {}, position=3), etl)] == [on_crashed.id]

    evaluator.put(on_failed.model_copy(update={"enabled": False}))  # disabled: reaches nothing any more
    evaluator.remove(on_crashed.id)
    assert evaluator.patterns() == set()
    assert evaluator.observe(_event("flow-run.Failed", {}, position=4), None) == []
    assert evaluator.observe(_event("flow-run.Crashed", {}, position=5), etl) == []
