"""OpenAPI for request bodies a route reads and validates itself (from the raw bytes, in one
pass of pydantic-core) instead of through a FastAPI body parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

__all__ = ["json_body", "publish_body_schemas"]

_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The route's `openapi_extra`: a required JSON body of `model`."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def publish_body_schemas(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Add the schemas of `models` (and the models they use) to the app's OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            _, definitions = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
            spec.setdefault("components", {}).setdefault("schemas", {}).update(definitions.get("$defs", {}))
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]
