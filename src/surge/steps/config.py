"""Typed configs for streams and steps, and the normalisation of Motia's plain-dict form.

Users write ``StreamConfig(name=..., schema=Model)``, ``ApiRouteConfig(name=..., method=...,
path=...)``, ``EventConfig(name=..., subscribes=[...])`` and ``CronConfig(name=..., cron=...)``;
Motia's Python steps write dicts (``{"type": "api", "bodySchema": {...}}``, ``{"type": "event",
"infrastructure": {"queue": {"maxRetries": 3}}}``). Both end up as the same frozen dataclasses,
with their schemas wrapped in ``surge.streams.schema.Schema``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from surge.errors import ConfigError
from surge.protocol.ids import id_problem
from surge.steps.middleware import Middleware, check_middleware
from surge.steps.response_schema import ResponseSchema, response_schemas
from surge.steps.strict import (
    FieldError,
    StrictKeywords,
    camel,
    check_choice,
    check_count,
    check_json_schema,
    check_keys,
    dataclass_keys,
    did_you_mean,
)
from surge.streams.history import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL, check_history
from surge.streams.schema import Schema, schema_from

__all__ = [
    "HTTP_METHODS",
    "MAX_SYNC_LIMIT",
    "SLOW_CONSUMER_POLICIES",
    "STEP_TYPES",
    "ApiRouteConfig",
    "CanAccess",
    "CronConfig",
    "EventConfig",
    "FieldError",
    "SlowConsumerPolicy",
    "StreamConfig",
    "Subscription",
    "normalize_api_config",
    "normalize_cron_config",
    "normalize_event_config",
    "normalize_stream_config",
    "step_type",
]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_SYNC_LIMIT = 100_000
SlowConsumerPolicy = Literal["resync", "latest"]
SLOW_CONSUMER_POLICIES: tuple[SlowConsumerPolicy, ...] = ("resync", "latest")
STEP_TYPES = ("api", "event", "cron")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client asks to join, as ``can_access`` sees it."""

    groupId: str  # the guide's (and the wire's) name
    id: str | None = None

    def __getitem__(self, key: str) -> str | None:
        # Motia's canAccess destructures ``{groupId, id}``; allow ``sub["groupId"]`` too.
        if key == "groupId":
            return self.groupId
        if key == "id":
            return self.id
        raise KeyError(key)

    @property
    def group_id(self) -> str:
        """The group id, snake_case."""
        return self.groupId


CanAccess = Callable[[Subscription, Any], bool | Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class StreamConfig(StrictKeywords):
    """A stream: its name (``ctx.streams.<name>``), item schema and access rule."""

    name: str
    schema: Any
    base_config: Mapping[str, Any] = field(default_factory=lambda: {"storageType": "default"})
    can_access: CanAccess | None = None
    ttl: float | None = None
    """Default seconds until an item expires (``set`` and creating ``update``); None: never."""
    sync_limit: int | None = None
    """Windowed groups: a group join's sync carries only the newest ``sync_limit`` items (and a
    ``more`` cursor for clients that page back); None: the whole group (protocol.md section 5)."""
    slow_consumer: SlowConsumerPolicy | None = None
    """What a connection too slow for this stream's changes gets (README: "Slow consumers"):
    ``"resync"`` (closed with 1013, resynced on reconnect: every intermediate value or none) or
    ``"latest"`` (its queued changes of one item collapse into the newest). None: the server's
    ``Limits.slow_consumer``."""
    presence: bool = False
    """Track who subscribes to each group (``stream.presence(g)``, ``presence`` events)."""
    presence_key: str | Callable[[Any], Any] | None = None
    """Names a member from the auth context: a key (``"userId"``) or a callable; several tabs
    of one member count once. None (or no such key): each connection is its own member."""
    presence_meta: Sequence[str] | Callable[[Any], Any] | None = None
    """A member's metadata: auth-context keys to copy, or a callable returning a JSON dict."""
    history_size: int = DEFAULT_HISTORY_SIZE
    """Changes and events each group keeps for resuming clients (0: none; docs/protocol.md)."""
    history_ttl: float = DEFAULT_HISTORY_TTL
    """Seconds each of them is kept."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"stream name {self.name!r} must be a Python identifier")
        problem = id_problem(self.name, "stream name")
        if problem:
            raise ConfigError(problem)
        if self.schema is None:
            raise ConfigError(f"stream {self.name!r} needs a schema")
        if self.can_access is not None and not callable(self.can_access):
            raise ConfigError(f"stream {self.name!r}: can_access must be callable")
        if self.ttl is not None and (
            isinstance(self.ttl, bool)
            or not isinstance(self.ttl, int | float)
            or not math.isfinite(self.ttl)
            or self.ttl <= 0
        ):
            raise ConfigError(f"stream {self.name!r}: ttl must be a positive number of seconds")
        if self.sync_limit is not None:
            check_count(
                self.sync_limit,
                what=f"stream {self.name!r}",
                field="syncLimit",
                minimum=1,
                maximum=MAX_SYNC_LIMIT,
            )
        if self.slow_consumer is not None and self.slow_consumer not in SLOW_CONSUMER_POLICIES:
            raise ConfigError(
                f"stream {self.name!r}: slow_consumer must be one of "
                f"{', '.join(map(repr, SLOW_CONSUMER_POLICIES))}, not {self.slow_consumer!r}"
            )
        _check_presence(self)
        check_history(self.history_size, self.history_ttl, f"stream {self.name!r}")

    @cached_property
    def item_schema(self) -> Schema:
        """The schema wrapped for validation (built once)."""
        schema = schema_from(self.schema, what=f"stream {self.name!r} schema")
        if schema is None:
            raise ConfigError(f"stream {self.name!r} needs a schema")
        return schema


@dataclass(frozen=True, kw_only=True)
class ApiRouteConfig(StrictKeywords):
    """An HTTP endpoint served by a step's ``handler(req, ctx)``."""

    name: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] | str
    path: str
    body_schema: Any = None
    response_schema: Mapping[int, Any] | None = None
    query_params: Sequence[Mapping[str, str]] = ()
    emits: Sequence[Any] = ()
    description: str | None = None
    flows: Sequence[str] = ()
    middleware: Sequence[Middleware] = ()
    """Motia's per-step middleware, run in order around the handler (after ``Config``'s)."""
    type: str = "api"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("an API step needs a non-empty name")
        method = str(self.method).upper()
        if method not in HTTP_METHODS:
            hint = did_you_mean(method, HTTP_METHODS)
            raise FieldError(
                f"step {self.name!r}: method {self.method!r} is not an HTTP method{hint}",
                field="method",
            )
        object.__setattr__(self, "method", method)
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(f"step {self.name!r}: path {self.path!r} must start with '/'")
        if self.type != "api":
            raise ConfigError(f"step {self.name!r}: an ApiRouteConfig has type 'api'")
        object.__setattr__(self, "emits", _topics(self.emits, self.name, "emits"))
        object.__setattr__(self, "middleware", check_middleware(self.middleware, self.name))

    @cached_property
    def response_validators(self) -> Mapping[int, ResponseSchema]:
        """The ``response_schema`` validators by status (built once)."""
        return response_schemas(self.response_schema, self.name)


def _check_presence(config: StreamConfig) -> None:
    name = config.name
    if not isinstance(config.presence, bool):
        raise FieldError(f"stream {name!r}: presence must be True or False", field="presence")
    key, meta = config.presence_key, config.presence_meta
    if not config.presence and (key is not None or meta is not None):
        raise FieldError(
            f"stream {name!r}: presence_key/presence_meta need presence=True", field="presence"
        )
    if key is not None and not callable(key) and (not isinstance(key, str) or not key):
        raise FieldError(
            f"stream {name!r}: presence_key must be an auth-context key or a callable",
            field="presence_key",
        )
    if meta is not None and not callable(meta):
        if isinstance(meta, str) or not all(isinstance(k, str) and k for k in meta):
            raise FieldError(
                f"stream {name!r}: presence_meta must be a list of auth-context keys or a callable",
                field="presence_meta",
            )
        object.__setattr__(config, "presence_meta", tuple(meta))


def _pick(raw: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in raw:
            return raw[name]
    return None


def normalize_stream_config(raw: Any) -> StreamConfig:
    """Accept a ``StreamConfig`` or Motia's dict form (``name``, ``schema``, ``baseConfig``)."""
    if isinstance(raw, StreamConfig):
        _check_stream(raw)
        raw.item_schema  # noqa: B018 - build it once now so a bad schema fails at startup
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config must be a StreamConfig or a dict, got {type(raw).__name__}")
    handled = ("name", "schema", "base_config", "can_access")
    # Fields added to StreamConfig later are accepted in either spelling without a change here.
    extra = {
        name: raw[key]
        for name in dataclass_keys(StreamConfig)
        if name not in handled
        for key in (name, camel(name))
        if key in raw
    }
    known = [*_STREAM_KEYS, *dataclass_keys(StreamConfig)]
    known += [camel(name) for name in known]
    suggest = [*_STREAM_KEYS, *(camel(n) for n in dataclass_keys(StreamConfig) if n not in handled)]
    check_keys(raw, known, what=f"stream {raw.get('name')!r}", suggest=suggest)
    config = StreamConfig(
        name=raw.get("name"),  # type: ignore[arg-type]
        schema=raw.get("schema"),
        base_config=_pick(raw, "base_config", "baseConfig") or {"storageType": "default"},
        can_access=_pick(raw, "can_access", "canAccess"),
        **extra,
    )
    _check_stream(config)
    config.item_schema  # noqa: B018
    return config


# The keys of Motia's dict forms, as documented; the snake_case spellings are accepted too.
_STREAM_KEYS = ("name", "schema", "baseConfig", "canAccess")
_STEP_KEYS = ("type", "name", "description", "emits", "virtualEmits", "flows", "includeFiles")
_API_KEYS = (
    *_STEP_KEYS, "path", "method", "bodySchema", "responseSchema", "queryParams",
    "virtualSubscribes", "middleware",
)  # fmt: skip
_API_ALIASES = ("body_schema", "response_schema", "query_params")
_EVENT_KEYS = (
    *_STEP_KEYS, "subscribes", "virtualSubscribes", "input", "infrastructure", "concurrency",
)  # fmt: skip
_EVENT_ALIASES = ("max_retries", "virtual_emits", "virtual_subscribes")
_CRON_KEYS = (*_STEP_KEYS, "cron", "infrastructure")
_UNSUPPORTED: dict[str, str] = {}
STORAGE_TYPES = ("default",)


def _check_stream(config: StreamConfig) -> None:
    what = f"stream {config.name!r}"
    base = config.base_config
    if not isinstance(base, Mapping):
        raise FieldError(f"{what}: baseConfig must be a dict", field="baseConfig")
    kind = base.get("storageType", "default")
    if kind == "custom":  # Motia's {"storageType": "custom", "factory": ...}
        raise FieldError(
            f"{what}: baseConfig storageType 'custom' is not supported: every stream is stored "
            "by the project's adapter (surge.config.py: Config(adapters=...)); use 'default'",
            field="baseConfig",
        )
    check_choice(kind, STORAGE_TYPES, what=f"{what}: baseConfig storageType", field="baseConfig")
    check_keys(base, ("storageType",), what=f"{what} baseConfig", field="baseConfig")
    check_json_schema(config.schema, what=f"{what} schema", field="schema")


def normalize_api_config(raw: Any) -> ApiRouteConfig:
    """Accept an ``ApiRouteConfig`` or Motia's dict form (``bodySchema``, ``responseSchema``)."""
    if isinstance(raw, ApiRouteConfig):
        config = raw
    elif isinstance(raw, Mapping):
        check_keys(
            raw,
            (*_API_KEYS, *_API_ALIASES, "virtual_emits", "virtual_subscribes", "include_files"),
            what=f"step {raw.get('name')!r}",
            suggest=_API_KEYS,
            unsupported=_UNSUPPORTED,
        )
        response = _pick(raw, "response_schema", "responseSchema")
        if response is not None and not isinstance(response, Mapping):
            raise FieldError(
                f"step {raw.get('name')!r}: responseSchema must be a dict of status -> schema",
                field="responseSchema",
            )
        config = ApiRouteConfig(
            name=raw.get("name"),  # type: ignore[arg-type]
            method=raw.get("method", ""),
            path=raw.get("path"),  # type: ignore[arg-type]
            body_schema=_pick(raw, "body_schema", "bodySchema"),
            response_schema={int(k): v for k, v in response.items()} if response else None,
            query_params=_pick(raw, "query_params", "queryParams") or (),
            emits=raw.get("emits") or (),
            description=raw.get("description"),
            flows=raw.get("flows") or (),
            middleware=raw.get("middleware") or (),
            type=raw.get("type", "api"),
        )
    else:
        raise ConfigError(f"config must be an ApiRouteConfig or a dict, got {type(raw).__name__}")
    what = f"step {config.name!r}"
    check_json_schema(config.body_schema, what=f"{what} bodySchema", field="bodySchema")
    schema_from(config.body_schema, what=f"{what} body_schema")
    for status, schema in (config.response_schema or {}).items():
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise FieldError(
                f"{what}: responseSchema key {status!r} is not an HTTP status",
                field="responseSchema",
            )
        check_json_schema(schema, what=f"{what} responseSchema[{status}]", field="responseSchema")
    config.response_validators  # noqa: B018 - build them once now so a bad schema fails at startup
    return config


def _topics(value: Any, step: str, what: str) -> tuple[str, ...]:
    """``emits``/``subscribes`` as a tuple of topic strings (Motia's ``{"topic": ...}`` too)."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise FieldError(
            f"step {step!r}: {what} must be a list of topic strings, got {type(value).__name__}",
            field=what,
        )
    topics: list[str] = []
    for entry in value:
        topic = entry.get("topic") if isinstance(entry, Mapping) else entry
        if not isinstance(topic, str) or not topic:
            raise FieldError(
                f"step {step!r}: {what} entry {entry!r} is not a topic string",
                field=what,
            )
        topics.append(topic)
    return tuple(topics)


def _positive(value: Any, step: str, what: str, *, integer: bool) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise FieldError(f"step {step!r}: {what} must be {kind}, got {value!r}", field=what)
    return value


def _check_name(name: Any, kind: str) -> None:
    if not isinstance(name, str) or not name:
        raise FieldError(f"a {kind} step needs a non-empty name", field="name")
    problem = id_problem(name, "step name")
    if problem:
        raise FieldError(problem, field="name")


@dataclass(frozen=True, kw_only=True)
class EventConfig(StrictKeywords):
    """A step that handles the messages of the topics it ``subscribes`` to.

    Its ``handler(input, ctx)`` gets each message's data, validated against ``input`` (a pydantic
    model: an instance; a JSON Schema dict: the dict). Delivery is at least once: a handler that
    raises is retried ``max_retries`` times with exponential backoff, then dead-lettered.
    """

    name: str
    subscribes: Sequence[str]
    emits: Sequence[str] = ()
    input: Any = None
    flows: Sequence[str] = ()
    description: str | None = None
    concurrency: int = 10
    """Handlers of this step running at once, per process."""
    max_retries: int = 3
    """Retries after the first attempt (Motia's ``infrastructure.queue.maxRetries``)."""
    fifo: bool = False
    """Handle messages of one ``messageGroupId`` strictly in order, one at a time."""
    visibility_timeout: float = 30.0
    """Lease of a running message, renewed while the handler runs; a crashed process's
    messages are delivered again once it runs out."""
    timeout: float | None = None
    """A handler running longer fails (and is retried); None: no limit."""
    virtual_emits: Sequence[Any] = ()
    virtual_subscribes: Sequence[Any] = ()
    type: str = "event"

    def __post_init__(self) -> None:
        _check_name(self.name, "event")
        if self.type != "event":
            raise FieldError(f"step {self.name!r}: an EventConfig has type 'event'", field="type")
        subscribes = _topics(self.subscribes, self.name, "subscribes")
        if not subscribes:
            raise FieldError(
                f"step {self.name!r}: an event step needs at least one topic in subscribes",
                field="subscribes",
            )
        object.__setattr__(self, "subscribes", subscribes)
        object.__setattr__(self, "emits", _topics(self.emits, self.name, "emits"))
        _positive(self.concurrency, self.name, "concurrency", integer=True)
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise FieldError(
                f"step {self.name!r}: maxRetries must be an integer, got {self.max_retries!r}",
                field="infrastructure",
            )
        if self.max_retries < 0:
            raise FieldError(
                f"step {self.name!r}: maxRetries must be 0 or more", field="infrastructure"
            )
        _positive(self.visibility_timeout, self.name, "visibility_timeout", integer=False)
        if self.timeout is not None:
            _positive(self.timeout, self.name, "timeout", integer=False)

    @cached_property
    def input_schema(self) -> Schema | None:
        """The ``input`` schema wrapped for validation (None: any data)."""
        try:
            return schema_from(self.input, what=f"step {self.name!r} input")
        except ConfigError as exc:
            raise FieldError(exc.message, field="input") from exc


@dataclass(frozen=True, kw_only=True)
class CronConfig(StrictKeywords):
    """A step whose ``handler(ctx)`` runs on a schedule, once per tick in the whole deployment.

    ``cron`` is a standard 5-field expression (minute hour day month weekday) or node-cron's
    6-field form with the seconds FIRST (``"*/10 * * * * *"``: every 10 seconds).
    """

    name: str
    cron: str
    emits: Sequence[str] = ()
    flows: Sequence[str] = ()
    description: str | None = None
    timeout: float | None = None
    virtual_emits: Sequence[Any] = ()
    type: str = "cron"

    def __post_init__(self) -> None:
        _check_name(self.name, "cron")
        if self.type != "cron":
            raise FieldError(f"step {self.name!r}: a CronConfig has type 'cron'", field="type")
        object.__setattr__(self, "emits", _topics(self.emits, self.name, "emits"))
        if self.timeout is not None:
            _positive(self.timeout, self.name, "timeout", integer=False)
        problem = cron_problem(self.cron)
        if problem is not None:
            raise FieldError(f"step {self.name!r}: cron {self.cron!r} {problem}", field="cron")

    @property
    def has_seconds(self) -> bool:
        """True for node-cron's 6-field form (seconds first)."""
        return len(self.cron.split()) == 6


def cron_problem(expression: Any) -> str | None:
    """Why ``expression`` is not a 5- or 6-field (seconds first) cron expression, or None."""
    from croniter import croniter

    if not isinstance(expression, str):
        return "must be a string"
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"has {len(fields)} fields; expected 5 (minute hour day month weekday) "
            "or 6 (second minute hour day month weekday)"
        )
    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        return "does not parse"
    return None


def step_type(raw: Any) -> Any:
    """The ``type`` of a step config object or dict (``"api"`` when a dict has none)."""
    if isinstance(raw, Mapping):
        return raw.get("type", "api")
    if isinstance(raw, ApiRouteConfig | EventConfig | CronConfig):
        return raw.type
    return getattr(raw, "type", None)


def _infrastructure(raw: Mapping[str, Any], step: Any) -> dict[str, Any]:
    """Motia's ``infrastructure: {queue: {...}, handler: {...}}`` as EventConfig keywords."""
    infra = raw.get("infrastructure") or {}
    if not isinstance(infra, Mapping):
        raise FieldError(f"step {step!r}: infrastructure must be a dict", field="infrastructure")
    queue = infra.get("queue") or {}
    handler = infra.get("handler") or {}
    if not isinstance(queue, Mapping) or not isinstance(handler, Mapping):
        raise FieldError(
            f"step {step!r}: infrastructure.queue and .handler must be dicts",
            field="infrastructure",
        )
    _check_infrastructure(infra, queue, handler, step, has_queue=True)
    out: dict[str, Any] = {}
    if "maxRetries" in queue:
        out["max_retries"] = queue["maxRetries"]
    kind = queue.get("type", "standard")
    if kind not in ("standard", "fifo"):
        raise FieldError(
            f"step {step!r}: infrastructure.queue.type must be 'standard' or 'fifo', got {kind!r}",
            field="infrastructure",
        )
    out["fifo"] = kind == "fifo"
    if "visibilityTimeout" in queue:
        out["visibility_timeout"] = queue["visibilityTimeout"]
    if "timeout" in handler:
        out["timeout"] = handler["timeout"]
    return out


# Motia Cloud's sizing of a handler; nothing to size in one local process, so accepted as is.
_HANDLER_KEYS = ("timeout", "ram", "cpu", "machineType")
_QUEUE_KEYS = ("type", "maxRetries", "visibilityTimeout")


def _check_infrastructure(
    infra: Mapping[str, Any],
    queue: Mapping[str, Any],
    handler: Mapping[str, Any],
    step: Any,
    *,
    has_queue: bool,
) -> None:
    what = f"step {step!r}: infrastructure"
    field = "infrastructure"
    check_keys(infra, ("handler", "queue") if has_queue else ("handler",), what=what, field=field)
    check_keys(handler, _HANDLER_KEYS, what=f"{what}.handler", field=field)
    delay = {"delaySeconds": "is not supported yet (emit later from a cron step instead)"}
    check_keys(queue, _QUEUE_KEYS, what=f"{what}.queue", field=field, unsupported=delay)


def normalize_event_config(raw: Any) -> EventConfig:
    """Accept an ``EventConfig`` or Motia's dict form (``subscribes``, ``infrastructure``)."""
    if isinstance(raw, EventConfig):
        config = raw
    elif isinstance(raw, Mapping):
        name = raw.get("name")
        check_keys(
            raw,
            (*_EVENT_KEYS, *_EVENT_ALIASES, "include_files"),
            what=f"step {name!r}",
            suggest=_EVENT_KEYS,
            unsupported=_UNSUPPORTED,
        )
        options = _infrastructure(raw, name)
        for key, motia in (("concurrency", "concurrency"), ("max_retries", "max_retries")):
            if key in raw or motia in raw:
                options[key] = raw[key] if key in raw else raw[motia]
        config = EventConfig(
            name=name,  # type: ignore[arg-type]
            subscribes=raw.get("subscribes"),  # type: ignore[arg-type]
            emits=raw.get("emits") or (),
            input=raw.get("input"),
            flows=raw.get("flows") or (),
            description=raw.get("description"),
            virtual_emits=_pick(raw, "virtual_emits", "virtualEmits") or (),
            virtual_subscribes=_pick(raw, "virtual_subscribes", "virtualSubscribes") or (),
            type=raw.get("type", "event"),
            **options,
        )
    else:
        raise ConfigError(f"config must be an EventConfig or a dict, got {type(raw).__name__}")
    check_json_schema(config.input, what=f"step {config.name!r} input", field="input")
    config.input_schema  # noqa: B018 - build it once now so a bad schema fails at startup
    return config


def normalize_cron_config(raw: Any) -> CronConfig:
    """Accept a ``CronConfig`` or Motia's dict form (``{"type": "cron", "cron": ...}``)."""
    if isinstance(raw, CronConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config must be a CronConfig or a dict, got {type(raw).__name__}")
    check_keys(
        raw,
        (*_CRON_KEYS, "virtual_emits", "include_files"),
        what=f"step {raw.get('name')!r}",
        suggest=_CRON_KEYS,
        unsupported=_UNSUPPORTED,
    )
    infra = raw.get("infrastructure") or {}
    handler = infra.get("handler") or {} if isinstance(infra, Mapping) else None
    if not isinstance(infra, Mapping) or not isinstance(handler, Mapping):
        raise FieldError(
            f"step {raw.get('name')!r}: infrastructure and its handler must be dicts",
            field="infrastructure",
        )
    _check_infrastructure(infra, {}, handler, raw.get("name"), has_queue=False)
    return CronConfig(
        name=raw.get("name"),  # type: ignore[arg-type]
        cron=raw.get("cron"),  # type: ignore[arg-type]
        emits=raw.get("emits") or (),
        flows=raw.get("flows") or (),
        description=raw.get("description"),
        timeout=handler.get("timeout"),
        virtual_emits=_pick(raw, "virtual_emits", "virtualEmits") or (),
        type=raw.get("type", "cron"),
    )
