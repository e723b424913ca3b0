"""OpenAPI 3.1 from a project's API steps, and an ASGI app serving it with Swagger UI at ``/docs``.

``build_openapi(registry)`` documents every API step: method and path (``/todo/:id`` becomes
``/todo/{id}`` with a required string path parameter), declared query parameters, the JSON body
(``body_schema``), one response per ``response_schema`` status, the step's ``description`` and its
name as ``operationId``. Pydantic models are emitted once each under ``components/schemas`` (their
nested models too, named as pydantic names them) and referenced with ``$ref``; JSON Schema dicts
are used as given (their ``$defs`` hoisted into ``components/schemas``). Responses the framework
itself produces are documented as well: a 400 with the validation errors when a body schema or a
path parameter is declared (unless the step declares its own 400). A step without
``response_schema`` gets a ``default`` response with no schema.

``openapi_routes(app)`` is a small ASGI app serving ``GET /openapi.json`` and ``GET /docs``; the
page's assets come from the ``swagger-ui-bundle-v2`` package installed next to Surge (never a CDN:
the machine may be offline). It reads the registry on every request, so hot reload shows at once.

Layers: this module reads ``surge.steps`` and ``surge.streams`` only; ``openapi_routes`` takes the
app (or its runtime) duck-typed, by its ``registry``.
"""

from __future__ import annotations

import copy
import html
import http
import importlib
import json
import mimetypes
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pydantic
from pydantic.json_schema import models_json_schema
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from surge.protocol.ids import MAX_ID_LENGTH
from surge.steps.discovery import discover
from surge.steps.registry import ApiRoute, Registry
from surge.streams.schema import Schema, schema_from

__all__ = [
    "OPENAPI_VERSION",
    "OpenApiDocs",
    "build_openapi",
    "openapi_for_project",
    "openapi_path",
    "openapi_routes",
]

OPENAPI_VERSION = "3.1.0"
REF_PREFIX = "#/components/schemas/"
_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
JSON = "application/json"

# The body of every 400 the framework answers for an invalid request body (server/http.py).
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "required": ["error"],
}


def openapi_path(path: str) -> str:
    """``/todo/:id`` -> ``/todo/{id}`` (``{id}`` stays as it is)."""
    return _PARAM.sub(r"{\1}", path)


class _Components:
    """Collects schemas: pydantic models in one pass (unique names), JSON Schema dicts as given."""

    def __init__(self, routes: Iterable[ApiRoute]) -> None:
        self.schemas: dict[str, Any] = {}
        inputs: list[tuple[type[pydantic.BaseModel], Any]] = []
        for route in routes:
            body = route.body_schema
            if body is not None and body.model is not None:
                inputs.append((body.model, "validation"))
            for schema in _response_schemas(route).values():
                if schema.model is not None:
                    inputs.append((schema.model, "serialization"))
        self._refs: dict[tuple[Any, Any], dict[str, Any]] = {}
        if inputs:
            unique = list(dict.fromkeys(inputs))
            refs, top = models_json_schema(unique, ref_template=REF_PREFIX + "{model}")
            self._refs = dict(refs)
            self.schemas.update(top.get("$defs", {}))

    def schema(self, schema: Schema, mode: str) -> dict[str, Any]:
        """The Schema Object for ``schema`` (a ``$ref`` for a pydantic model)."""
        if schema.model is not None:
            return copy.deepcopy(self._refs[(schema.model, mode)])
        return self._hoist(schema.json_schema)

    def _hoist(self, given: Mapping[str, Any]) -> dict[str, Any]:
        result = copy.deepcopy(dict(given))
        defs = result.pop("$defs", None) or result.pop("definitions", None)
        if not defs:
            return result
        renames: dict[str, str] = {}
        for name, definition in defs.items():
            target = name
            n = 2
            while target in self.schemas and self.schemas[target] != definition:
                target = f"{name}{n}"
                n += 1
            renames[name] = target
        rewritten = _rewrite_refs(result, renames)
        for name, definition in defs.items():
            self.schemas[renames[name]] = _rewrite_refs(definition, renames)
        return rewritten  # type: ignore[no-any-return]


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for prefix in ("#/$defs/", "#/definitions/"):
                    if value.startswith(prefix):
                        name = value[len(prefix) :]
                        value = REF_PREFIX + renames.get(name, name)
            out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(value, renames) for value in node]
    return node


def _response_schemas(route: ApiRoute) -> dict[int, Schema]:
    declared = route.config.response_schema or {}
    out: dict[int, Schema] = {}
    for status, raw in declared.items():
        schema = schema_from(raw, what=f"step {route.config.name!r} response_schema[{status}]")
        if schema is not None:
            out[int(status)] = schema
    return out


def _status_text(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


def _parameters(route: ApiRoute) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            # One path segment (a "/" cannot reach this route), and what a stream id may be:
            # path parameters are nearly always ids, and ids are refused (400) otherwise.
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ID_LENGTH,
                "pattern": "^[^/\\u0000-\\u001f\\u007f-\\u009f]+$",
            },
        }
        for name in route.param_names
    ]
    for declared in route.config.query_params:
        name = declared.get("name")
        if not isinstance(name, str) or not name:
            continue
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": bool(declared.get("required", False)),
            "schema": {"type": "string"},
        }
        description = declared.get("description")
        if isinstance(description, str) and description:
            param["description"] = description
        params.append(param)
    return params


def _operation(route: ApiRoute, components: _Components) -> dict[str, Any]:
    config = route.config
    operation: dict[str, Any] = {"operationId": config.name, "summary": config.name}
    if config.description:
        operation["description"] = config.description
    if config.flows:
        operation["tags"] = list(config.flows)
    parameters = _parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.body_schema is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": components.schema(route.body_schema, "validation")}},
        }
    responses: dict[str, Any] = {}
    for status, schema in sorted(_response_schemas(route).items()):
        responses[str(status)] = {
            "description": _status_text(status),
            "content": {JSON: {"schema": components.schema(schema, "serialization")}},
        }
    if (route.body_schema is not None or route.param_names) and "400" not in responses:
        # The framework's own 400: an invalid body, or a ValidationError the step raised (a
        # path id a stream refused, say): server/http.py.
        responses["400"] = {
            "description": "Invalid request",
            "content": {JSON: {"schema": copy.deepcopy(VALIDATION_ERROR_SCHEMA)}},
        }
    if not config.response_schema:
        responses["default"] = {"description": "The step's response (no response_schema declared)"}
    operation["responses"] = responses
    return operation


def build_openapi(
    registry: Registry,
    *,
    title: str = "Surge API",
    version: str = "0.1.0",
    description: str | None = None,
    servers: Iterable[str] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the registry's API steps (a JSON-ready dict)."""
    routes = sorted(registry.routes, key=lambda r: (openapi_path(r.config.path), r.config.method))
    components = _Components(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(openapi_path(route.config.path), {})
        item[route.config.method.lower()] = _operation(route, components)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info}
    server_list = [{"url": url} for url in servers]
    if server_list:
        document["servers"] = server_list
    document["paths"] = paths
    if components.schemas:
        document["components"] = {"schemas": dict(sorted(components.schemas.items()))}
    return document


def openapi_for_project(project_dir: Path | str, **options: Any) -> dict[str, Any]:
    """Discover the project's steps and build its document (``title`` defaults to its folder).

    Raises:
        ConfigError: a step file is broken (as at startup).
    """
    root = Path(project_dir).resolve()
    options.setdefault("title", root.name)
    return build_openapi(discover(root), **options)


# -- serving --------------------------------------------------------------------------------------

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: {spec_url}, dom_id: "#swagger-ui", deepLinking: true}});
</script>
</body>
</html>
"""

_MISSING_ASSETS = (
    "Swagger UI is not installed. Surge serves /docs from a local package, never a CDN:\n"
    "    pip install swagger-ui-bundle-v2\n"
    "The OpenAPI document is at {spec}.\n"
)
_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}


def _assets_dir() -> Path | None:
    # Optional, imported by name: Surge runs without it (and /docs says what to install).
    try:
        bundle = importlib.import_module("swagger_ui_bundle")
    except ImportError:
        return None
    return Path(str(bundle.swagger_ui_path))


def _registry_of(source: Any) -> Callable[[], Registry]:
    if isinstance(source, Registry):
        return lambda: source
    if hasattr(source, "registry"):
        return lambda: source.registry
    runtime = getattr(source, "runtime", None)
    if runtime is not None and hasattr(runtime, "registry"):
        return lambda: runtime.registry
    raise TypeError("openapi_routes needs a SurgeApp, its runtime or a Registry")


class OpenApiDocs:
    """ASGI app: ``GET <openapi_path>`` (the document) and ``GET <docs_path>`` (Swagger UI).

    ``handles(scope)`` tells a host app which requests to hand over; anything else gets 404.
    Under a mount prefix (``root_path``) the page and the document's ``servers`` use it.
    """

    def __init__(
        self,
        source: Any,
        *,
        openapi_path: str = "/openapi.json",
        docs_path: str = "/docs",
        title: str = "Surge API",
        version: str = "0.1.0",
    ) -> None:
        self._registry = _registry_of(source)
        self.openapi_path = openapi_path
        self.docs_path = docs_path.rstrip("/") or "/docs"
        self.title = title
        self.version = version
        self._cache: tuple[Registry, str, bytes] | None = None

    def _local_path(self, scope: Mapping[str, Any]) -> str:
        path: str = scope.get("path", "/")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        return path

    def handles(self, scope: Mapping[str, Any]) -> bool:
        """True for the HTTP requests this app answers."""
        if scope.get("type") != "http":
            return False
        path = self._local_path(scope)
        docs = self.docs_path
        return path in (self.openapi_path, docs, docs + "/") or path.startswith(docs + "/")

    def document(self, root_path: str = "") -> bytes:
        """The encoded document for the current registry (cached until it is swapped)."""
        registry = self._registry()
        cache = self._cache
        if cache is not None and cache[0] is registry and cache[1] == root_path:
            return cache[2]
        servers = [root_path] if root_path else []
        spec = build_openapi(registry, title=self.title, version=self.version, servers=servers)
        encoded = orjson.dumps(spec)
        self._cache = (registry, root_path, encoded)
        return encoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await self._response(scope)(scope, receive, send)

    def _response(self, scope: Scope) -> Response:
        path = self._local_path(scope)
        root = scope.get("root_path", "")
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed\n", 405)
        docs = self.docs_path
        if path == self.openapi_path:
            return Response(self.document(root), media_type=JSON)
        if path in (docs, docs + "/"):
            assets = _assets_dir()
            if assets is None:
                return PlainTextResponse(_MISSING_ASSETS.format(spec=root + self.openapi_path), 501)
            page = _DOCS_PAGE.format(
                title=html.escape(self.title),
                assets=html.escape(root + docs),
                spec_url=json.dumps(root + self.openapi_path).replace("<", "\\u003c"),
            )
            return HTMLResponse(page)
        return self._asset(path[len(docs) + 1 :])

    def _asset(self, name: str) -> Response:
        assets = _assets_dir()
        if assets is None or name not in _ASSETS:
            return PlainTextResponse("not found\n", 404)
        file = assets / name
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return Response(
            file.read_bytes(), media_type=kind, headers={"cache-control": "public, max-age=86400"}
        )


def openapi_routes(
    app_or_runtime: Any,
    *,
    openapi_path: str = "/openapi.json",
    docs_path: str = "/docs",
    title: str = "Surge API",
    version: str = "0.1.0",
) -> OpenApiDocs:
    """The ASGI app serving ``/openapi.json`` and ``/docs`` for a ``SurgeApp`` (or its runtime).

    Wire it in front of the app: ``if docs.handles(scope): await docs(scope, receive, send)``,
    or mount it (``Mount("/", docs)``) in a Starlette/FastAPI host.
    """
    return OpenApiDocs(
        app_or_runtime,
        openapi_path=openapi_path,
        docs_path=docs_path,
        title=title,
        version=version,
    )
