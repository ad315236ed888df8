"""Automations and notifications: rules on the event log that alert (Slack, email, signed
webhooks) and act on runs (replay, cancel), with credentials kept in encrypted blocks.

This package imports `ledgerflow.events` and nothing else of ours (never runtime, projections
or api). Modules:

- model: what an automation is (rule files, API bodies); templates: sandboxed Jinja2
- matching, triggers, evaluation: which events count and when a rule fires (no I/O)
- context, firing: what templates see; a firing and its actions as events
- definitions: automations as events, and the fold that gives the current set
- blocks, secretbox, tables: credentials, encrypted at rest in the store's database
- notifier, slack, mail, webhook, signing: the senders; actions: carrying out one action
- dispatch: concurrent, retried deliveries; backtest: a rule over stored history
- engine: the rules over the log, state kept with its cursor; service: the engine on the
  durable consumer, in the server or alone (`ledgerflow automations run`)
"""

from ledgerflow.notifications.blocks import BlockStore, RemoteSlackWebhook, SlackWebhook, SmtpServer, Webhook
from ledgerflow.notifications.errors import (
    ActionRefused,
    AutomationExists,
    AutomationNotFound,
    BlockError,
    BlockExists,
    BlockNotFound,
    DeliveryError,
    NotificationError,
    RuleError,
    SecretKeyError,
)
from ledgerflow.notifications.model import Automation, AutomationSpec, load_rule, parse_rule
from ledgerflow.notifications.signing import sign, verify

__all__ = [
    "ActionRefused",
    "Automation",
    "AutomationExists",
    "AutomationNotFound",
    "AutomationSpec",
    "BlockError",
    "BlockExists",
    "BlockNotFound",
    "BlockStore",
    "DeliveryError",
    "NotificationError",
    "RemoteSlackWebhook",
    "RuleError",
    "SecretKeyError",
    "SlackWebhook",
    "SmtpServer",
    "Webhook",
    "load_rule",
    "parse_rule",
    "sign",
    "verify",
]
