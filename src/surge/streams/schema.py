"""One interface over the two ways users describe data: a pydantic model or a JSON Schema dict.

``Schema.validate(data)`` returns ``(value, json)``: ``value`` is what handlers get back (a model
instance for a pydantic schema, the dict itself for a JSON Schema) and ``json`` is the plain JSON
object that is stored and sent. Every failure is a ``surge.errors.ValidationError`` whose
``errors`` name the field (``loc``) and the problem (``msg``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from surge.errors import ConfigError, ValidationError

__all__ = ["Schema", "schema_from"]


class Schema:
    """A validator plus the JSON Schema it publishes (for types, OpenAPI and the Workbench)."""

    def __init__(
        self,
        *,
        model: type[pydantic.BaseModel] | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        if model is not None:
            self.json_schema: dict[str, Any] = model.model_json_schema()
            self._validator: Any = None
        else:
            if json_schema is None:
                raise ConfigError("a schema needs a pydantic model or a JSON Schema dict")
            self.json_schema = dict(json_schema)
            # Imported here: only dict schemas need jsonschema (~30 ms at startup).
            from jsonschema import validators as jsonschema_validators
            from jsonschema.exceptions import SchemaError

            cls = jsonschema_validators.validator_for(self.json_schema)
            try:
                cls.check_schema(self.json_schema)
            except SchemaError as exc:
                raise ConfigError(f"invalid JSON Schema: {exc.message}") from exc
            self._validator = cls(self.json_schema)

    @property
    def field_names(self) -> set[str] | None:
        """The model's field names (None for JSON Schema dicts)."""
        return set(self.model.model_fields) if self.model is not None else None

    def validate(self, data: Any) -> tuple[Any, dict[str, Any]]:
        """Validate ``data``; return (value for Python callers, JSON object to store and send)."""
        if self.model is not None:
            try:
                value = self.model.model_validate(data)
            except pydantic.ValidationError as exc:
                raise ValidationError(_summary(exc.errors()), _clean(exc.errors())) from exc
            return value, value.model_dump(mode="json")
        if isinstance(data, pydantic.BaseModel):
            data = data.model_dump(mode="json")
        problems = sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if problems:
            errors = [
                {"loc": list(e.absolute_path), "msg": e.message, "type": str(e.validator)}
                for e in problems
            ]
            raise ValidationError(_summary(errors), errors)
        if not isinstance(data, dict):
            raise ValidationError(
                "value must be a JSON object",
                [{"loc": [], "msg": "must be an object", "type": "type"}],
            )
        return data, data

    def validate_body(self, raw: bytes, decoded: Any) -> Any:
        """Validate a request body (its bytes and their decoded JSON); return the Python value.

        A pydantic model validates the bytes in pydantic's strict JSON mode, as the document's
        JSON Schema reads: ``0.0`` is not a boolean, ``"5"`` is not an integer (a string is
        still a datetime, a UUID or an enum's value, as JSON has no such types). A model that
        sets ``strict`` in its ``model_config`` keeps its own choice.
        """
        model = self.model
        if model is None or decoded is None:
            return self.validate_json(decoded)
        strict = None if "strict" in model.model_config else True
        try:
            return model.model_validate_json(raw, strict=strict)
        except pydantic.ValidationError as exc:
            raise ValidationError(_summary(exc.errors()), _clean(exc.errors())) from exc

    def validate_json(self, raw: Any) -> Any:
        """Validate already-decoded JSON and return the Python value only."""
        if self.model is not None:  # no JSON dump: nothing stores or sends this value
            try:
                return self.model.model_validate(raw)
            except pydantic.ValidationError as exc:
                raise ValidationError(_summary(exc.errors()), _clean(exc.errors())) from exc
        return self.validate(raw)[0]


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    # pydantic's error dicts can hold the exception object in "ctx" and the raw "input":
    # keep what is JSON-safe and useful to a client.
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def _summary(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def schema_from(value: Any, *, what: str) -> Schema | None:
    """Build a Schema from a pydantic model class, a JSON Schema dict, or None."""
    if value is None:
        return None
    if isinstance(value, Schema):
        return value
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return Schema(model=value)
    if isinstance(value, Mapping):
        return Schema(json_schema=value)
    raise ConfigError(
        f"{what} must be a pydantic model class or a JSON Schema dict, got {type(value).__name__}"
    )
