"""The notifications package's exceptions.

    NotificationError
    ├── RuleError              a rule file or API body is malformed (the message names the field)
    ├── AutomationNotFound     no automation of that name or id
    ├── AutomationExists       the name is taken (names are unique)
    ├── BlockError
    │   ├── BlockNotFound
    │   ├── BlockExists
    │   └── SecretKeyError     the secret key is missing, malformed or not the one that encrypted
    ├── TemplateRenderError    a template failed while rendering (it compiled at creation)
    ├── DeliveryError          a sender could not deliver (`retryable` says whether to try again)
    └── ActionRefused          the action cannot run (no flow run to act on, max_replays reached)
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "ActionRefused",
    "AutomationExists",
    "AutomationNotFound",
    "BlockError",
    "BlockExists",
    "BlockNotFound",
    "DeliveryError",
    "NotificationError",
    "RuleError",
    "SecretKeyError",
    "TemplateRenderError",
    "describe_validation",
]


class NotificationError(Exception):
    pass


class RuleError(NotificationError, ValueError):
    """A malformed automation; the message names the field (`trigger.threshold: ...`)."""


class AutomationNotFound(NotificationError, LookupError):
    pass


class AutomationExists(NotificationError):
    pass


class BlockError(NotificationError):
    pass


class BlockNotFound(BlockError, LookupError):
    pass


class BlockExists(BlockError):
    pass


class SecretKeyError(BlockError):
    pass


class TemplateRenderError(NotificationError):
    pass


class DeliveryError(NotificationError):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ActionRefused(NotificationError):
    pass


def describe_validation(exc: ValidationError) -> str:
    """One line naming each bad field: `trigger.threshold: Input should be greater than 0`."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)
