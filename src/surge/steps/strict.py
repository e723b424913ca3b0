"""Strict configs: an unknown key, keyword or value is a ``FieldError`` naming the closest one.

A typo must never switch a feature off silently (``"bodySchem"`` used to mean "no validation").
Three checks, shared by the typed configs and Motia's dict form (``surge.steps.config``):

- ``check_keys``: the keys of a dict config (or the keywords of a typed one) against the known
  ones, with "did you mean 'bodySchema'?" from ``difflib.get_close_matches``.
- ``check_choice``: a value from a fixed set (``storageType``, an HTTP method, a step type).
- ``check_count``: a whole number in a range (``syncLimit``): ``True``, ``2.0`` and ``"50"`` are
  refused, not coerced.
- ``check_json_schema``: a JSON Schema dict against its draft's metaschema (the ``jsonschema``
  library's ``check_schema``), then each schema object's keys: a key that is no keyword of any
  JSON Schema draft (4 to 2020-12) but within edit distance 2 of one (1 for keywords of 4 or 5
  letters) is a typo (``"requried"``). Unknown keywords are legal JSON Schema (annotations), so a
  key far from every keyword passes, and a key prefixed ``x-`` always does.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, Self

from surge.errors import ConfigError

__all__ = [
    "JSON_SCHEMA_KEYWORDS",
    "FieldError",
    "StrictKeywords",
    "camel",
    "check_choice",
    "check_count",
    "check_json_schema",
    "check_keys",
    "closest",
    "dataclass_keys",
    "did_you_mean",
    "edit_distance",
]


class FieldError(ConfigError):
    """A ``ConfigError`` about one config key (``field``), so discovery can point at its line."""

    def __init__(self, message: str, *, field: str) -> None:
        self.field = field
        super().__init__(message)


def camel(name: str) -> str:
    """``body_schema`` -> ``bodySchema`` (Motia's spelling of a typed field)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` most likely meant (same name in the other case style first)."""
    options = list(dict.fromkeys(candidates))
    for spelling in (camel(word), _snake(word)):
        if spelling != word and spelling in options:
            return spelling
    by_lower = {option.lower(): option for option in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not found:
        lowered = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
        found = [by_lower[lowered[0]]] if lowered else []
    return found[0] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""`` when none is close."""
    match = closest(word, candidates)
    return f" (did you mean {match!r}?)" if match is not None else ""


def check_keys(
    raw: Mapping[str, Any],
    known: Iterable[str],
    *,
    what: str,
    suggest: Sequence[str] | None = None,
    unsupported: Mapping[str, str] | None = None,
    field: str | None = None,
    noun: str = "key",
) -> None:
    """Raise a FieldError for the first key of ``raw`` that is not in ``known``.

    Args:
        raw: the dict config (or a nested part of it, such as ``infrastructure.queue``).
        known: every accepted key.
        what: how the message names the config ("step 'CreateTodo'").
        suggest: the keys offered as "did you mean" (default: ``known``); the documented
            spelling, so a dict is told ``bodySchema`` rather than ``body_schema``.
        unsupported: keys Motia knows that Surge does not do, with the reason.
        field: the top-level key the FieldError points at (default: the unknown key itself).
        noun: what a key is called in the message ("keyword" for a typed config).
    """
    accepted = set(known)
    for key in raw:
        if key in accepted:
            continue
        if not isinstance(key, str):
            raise FieldError(f"{what}: key {key!r} is not a string", field=field or "")
        if unsupported and key in unsupported:
            raise FieldError(f"{what}: {key!r} {unsupported[key]}", field=field or key)
        options = list(suggest) if suggest is not None else sorted(accepted)
        hint = did_you_mean(key, options)
        if not hint:
            hint = f"; known {noun}s: " + ", ".join(options)
        raise FieldError(f"{what}: unknown {noun} {key!r}{hint}", field=field or key)


def check_choice(value: Any, choices: Sequence[str], *, what: str, field: str) -> None:
    """Raise a FieldError when ``value`` is not one of ``choices``."""
    if isinstance(value, str) and value in choices:
        return
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    if not hint:
        hint = " (expected one of " + ", ".join(repr(c) for c in choices) + ")"
    raise FieldError(f"{what} {value!r} is not valid{hint}", field=field)


def check_count(value: Any, *, what: str, field: str, minimum: int, maximum: int) -> None:
    """Raise a FieldError unless ``value`` is an int (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(
            f"{what}: {field} must be a whole number, not {value!r} ({type(value).__name__})",
            field=field,
        )
    if not minimum <= value <= maximum:
        raise FieldError(
            f"{what}: {field} must be between {minimum} and {maximum}, not {value}", field=field
        )


def dataclass_keys(cls: type[Any]) -> list[str]:
    """The init keywords of a dataclass, in declaration order."""
    if not is_dataclass(cls):
        return []
    return [f.name for f in fields(cls) if f.init]


class StrictKeywords:
    """Mixin for the typed config dataclasses: an unknown keyword is a FieldError with a hint.

    The dataclass ``__init__`` would raise a bare ``TypeError`` ("unexpected keyword argument"),
    which discovery could only report as an import failure.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        known = dataclass_keys(cls)
        name = kwargs.get("name")
        label = f"{cls.__name__}({name!r})" if isinstance(name, str) else cls.__name__
        check_keys(kwargs, known, what=label, noun="keyword")
        return super().__new__(cls)


# -- JSON Schema ---------------------------------------------------------------------------------

JSON_SCHEMA_KEYWORDS = frozenset(
    {
        # core (drafts 4 to 2020-12)
        "$schema", "$id", "id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor",
        "$recursiveRef", "$recursiveAnchor", "$vocabulary", "$comment", "$defs", "definitions",
        # applicators
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas",
        "dependencies", "prefixItems", "items", "additionalItems", "contains", "properties",
        "patternProperties", "additionalProperties", "propertyNames", "unevaluatedItems",
        "unevaluatedProperties",
        # validation
        "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
        "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties",
        "required", "dependentRequired",
        # annotations, format, content
        "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
        "format", "contentEncoding", "contentMediaType", "contentSchema",
        # OpenAPI's additions, common in schemas written for (or generated by) OpenAPI tools
        "example", "nullable", "discriminator", "xml", "externalDocs",
    }
)  # fmt: skip

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = (
    "not", "if", "then", "else", "additionalProperties", "unevaluatedProperties",
    "unevaluatedItems", "contains", "propertyNames", "additionalItems", "contentSchema",
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SIMPLE_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions (``requried`` -> ``required``: 1)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                value = min(value, previous2[j - 2] + 1)
            current.append(value)
        previous2, previous = previous, current
    return previous[-1]


def _misspelled_keyword(key: str) -> str | None:
    """The keyword ``key`` is a typo of, or None (a known keyword, an ``x-`` key, or far)."""
    if key in JSON_SCHEMA_KEYWORDS or key.startswith("x-"):
        return None
    best: tuple[int, str] | None = None
    for keyword in JSON_SCHEMA_KEYWORDS:
        # Short keywords ("if", "not", "id") are one or two edits from many ordinary words.
        allowed = 2 if len(keyword) >= 6 else 1 if len(keyword) >= 4 else 0
        if allowed == 0 or abs(len(keyword) - len(key)) > allowed:
            continue
        distance = edit_distance(key, keyword)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, keyword)
    return best[1] if best is not None else None


def _location(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def _walk(schema: Any, path: list[Any]) -> Iterable[tuple[list[Any], str, str]]:
    """Every (location, key, keyword) of a misspelled keyword in ``schema`` and its subschemas."""
    if not isinstance(schema, Mapping):
        return
    for key in schema:
        if isinstance(key, str):
            keyword = _misspelled_keyword(key)
            if keyword is not None:
                yield path, key, keyword
    for key in _SCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, Mapping):
            for name, child in children.items():
                yield from _walk(child, [*path, key, name])
    dependencies = schema.get("dependencies")
    if isinstance(dependencies, Mapping):
        for name, child in dependencies.items():
            yield from _walk(child, [*path, "dependencies", name])
    for key in _SCHEMA_ONE:
        yield from _walk(schema.get(key), [*path, key])
    for key in _SCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                yield from _walk(child, [*path, key, index])
    items = schema.get("items")
    if isinstance(items, list):
        for index, child in enumerate(items):
            yield from _walk(child, [*path, "items", index])
    else:
        yield from _walk(items, [*path, "items"])


def check_json_schema(schema: Any, *, what: str, field: str) -> None:
    """Raise a FieldError when the JSON Schema dict ``schema`` is invalid or has a typo.

    Anything that is not a dict (a pydantic model, None) is left to ``schema_from``.
    """
    if not isinstance(schema, Mapping):
        return
    # Imported here: jsonschema costs ~30 ms at startup, and only dict schemas need it.
    from jsonschema import validators as jsonschema_validators
    from jsonschema.exceptions import SchemaError

    cls = jsonschema_validators.validator_for(schema)
    try:
        cls.check_schema(dict(schema))
    except SchemaError as exc:
        location = list(exc.path)
        hint = ""
        if location and location[-1] == "type" and isinstance(exc.instance, str):
            hint = did_you_mean(exc.instance, _SIMPLE_TYPES)
        raise FieldError(
            f"{what}: invalid JSON Schema at {_location(location)}: {exc.message}{hint}",
            field=field,
        ) from exc
    for path, key, keyword in _walk(schema, []):
        where = f" at {_location(path)}" if path else ""
        raise FieldError(
            f"{what}: unknown JSON Schema keyword {key!r}{where} (did you mean {keyword!r}?); "
            "prefix your own keys with 'x-'",
            field=field,
        )
