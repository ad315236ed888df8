"""Wrappers that tell the engine how to treat a task's input (Prefect's annotations).

- `unmapped(x)`: `.map()` passes x whole to every run instead of iterating over it.
- `allow_failure(future)`: the task runs even if that upstream run failed; it gets the
  upstream's exception as the input's value.
- `quote(x)`: x is passed as is, not searched for futures and states (a big collection or
  DataFrame is not walked); its content still counts in the input hash.
- `opaque(x)`: like `quote`, and its content is also left out of the input hash, so caching and
  replay match a call whatever x holds (a client, a connection, a huge frame).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["BaseAnnotation", "allow_failure", "opaque", "quote", "unmapped"]

T = TypeVar("T")


class BaseAnnotation(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseAnnotation) and type(self) is type(other) and bool(self.value == other.value)

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(BaseAnnotation[T]):
    pass


class allow_failure(BaseAnnotation[T]):
    pass


class quote(BaseAnnotation[T]):
    def unquote(self) -> T:
        return self.value


class opaque(BaseAnnotation[T]):
    pass


def hash_placeholder(value: opaque[Any]) -> str:
    """What an `opaque` input contributes to the input hash: its type, not its content."""
    kind = type(value.value)
    return f"opaque:{kind.__module__}.{kind.__qualname__}"
