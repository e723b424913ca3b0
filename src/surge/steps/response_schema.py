"""The schema of one status's API response body, as declared in a step's ``response_schema``.

Kept apart from ``surge.steps.responses`` (which knows ``ApiResponse``) so that the configs can
build these once without importing the request context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pydantic

from surge.errors import ConfigError

__all__ = ["ResponseSchema", "response_schemas"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class ResponseSchema:
    """The schema of one status's response body: a pydantic model class or a JSON Schema dict."""

    def __init__(self, value: Any, *, what: str) -> None:
        self.model: type[pydantic.BaseModel] | None = None
        self._validator: Any = None
        if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
            self.model = value
        elif isinstance(value, Mapping):
            schema = dict(value)
            from jsonschema import validators as jsonschema_validators  # only dict schemas

            self._validator = jsonschema_validators.validator_for(schema)(schema)
        else:
            raise ConfigError(
                f"{what} must be a pydantic model class or a JSON Schema dict, "
                f"got {type(value).__name__}"
            )

    def problem(self, body: Any) -> str | None:
        """The first way ``body`` does not match (``field: message``), or None when it does."""
        if self.model is not None:
            if isinstance(body, pydantic.BaseModel) and not isinstance(body, self.model):
                body = body.model_dump(mode="json")
            try:
                self.model.model_validate(body)
            except pydantic.ValidationError as exc:
                first = exc.errors()[0]
                return _where(first["loc"], first["msg"])
            return None
        try:
            plain = orjson.loads(orjson.dumps(body, default=_jsonable))
        except TypeError as exc:
            return f"(root): {exc}"
        error = next(iter(sorted(self._validator.iter_errors(plain), key=_error_order)), None)
        return _where(error.absolute_path, error.message) if error is not None else None


def _error_order(error: Any) -> list[str]:
    return [str(part) for part in error.absolute_path]


def _where(loc: Any, message: str) -> str:
    field = ".".join(str(part) for part in loc) or "(root)"
    return f"field {field}: {message}"


def response_schemas(schemas: Mapping[int, Any] | None, step: str) -> dict[int, ResponseSchema]:
    """Build the validators of a step's ``response_schema`` (status -> schema)."""
    return {
        status: ResponseSchema(schema, what=f"step {step!r} response_schema[{status}]")
        for status, schema in (schemas or {}).items()
    }
