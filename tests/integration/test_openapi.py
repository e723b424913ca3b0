"""OpenAPI 3.1 from API steps: the document, its validity, `surge generate openapi`, /docs."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel, ConfigDict

from surge import ApiResponse, ApiRouteConfig, StreamConfig, create_app
from surge.openapi import build_openapi, openapi_for_project, openapi_path, openapi_routes
from surge.server.app import SurgeApp
from surge.testing import TestClient

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
TODO = REPO / "examples" / "todo"
SURGE = str(Path(sys.executable).with_name("surge"))


def validate_openapi(document: dict[str, Any]) -> None:
    """Validate against the OpenAPI 3.1 schema (openapi-spec-validator; required under CI)."""
    if importlib.util.find_spec("openapi_spec_validator") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("openapi-spec-validator is not installed (required under CI=true)")
        pytest.skip("openapi-spec-validator is not installed")
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

    validate(document, cls=OpenAPIV31SpecValidator)


# -- the document of examples/todo ---------------------------------------------------------------


def test_todo_document_is_valid_openapi_3_1() -> None:
    document = openapi_for_project(TODO)
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_todo_document_has_every_step_with_params_bodies_and_responses() -> None:
    document = openapi_for_project(TODO)
    paths = document["paths"]
    assert sorted(paths) == ["/todo", "/todo/typing", "/todo/{id}"]
    assert sorted(paths["/todo"]) == ["get", "post"]
    assert sorted(paths["/todo/{id}"]) == ["delete", "put"]
    create = paths["/todo"]["post"]
    assert create["operationId"] == "CreateTodo"
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateTodo"
    }
    assert sorted(create["responses"]) == ["200", "400"]
    assert create["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Todo"
    }
    complete = paths["/todo/{id}"]["put"]
    assert complete["parameters"][0]["name"] == "id"
    assert complete["parameters"][0]["in"] == "path"
    assert complete["parameters"][0]["required"] is True
    assert sorted(complete["responses"]) == ["200", "400", "404"]
    assert "default" in paths["/todo"]["get"]["responses"]  # no response_schema declared
    schemas = document["components"]["schemas"]
    assert {"CreateTodo", "Todo", "Error", "UpdateTodo", "Typing"} <= set(schemas)
    assert schemas["Todo"]["required"] == ["id", "description", "createdAt"]


def test_paths_use_openapi_templates() -> None:
    assert openapi_path("/a/:id/b/:other") == "/a/{id}/b/{other}"
    assert openapi_path("/a/{id}") == "/a/{id}"


# -- inline steps: descriptions, query params, JSON Schema dicts, name clashes ------------------


class Address(BaseModel):
    street: str


class Person(BaseModel):
    name: str
    address: Address


async def noop(req: Any, ctx: Any) -> ApiResponse:
    return ApiResponse(200, {})


def make_error(field: str) -> type[BaseModel]:
    """Two different models, both called Error (two step files may well do this)."""
    return type("Error", (BaseModel,), {"__annotations__": {field: str}})


def inline_app() -> SurgeApp:
    defs_schema = {
        "type": "object",
        "properties": {"tag": {"$ref": "#/$defs/Tag"}},
        "required": ["tag"],
        "$defs": {"Tag": {"type": "string", "maxLength": 10}},
    }
    steps: list[tuple[Any, Any]] = [
        (
            ApiRouteConfig(
                name="Search",
                method="GET",
                path="/people",
                description="Find people by name.",
                query_params=[{"name": "q", "description": "part of the name"}],
                response_schema={200: {"type": "array", "items": {"type": "object"}}},
                flows=["people"],
            ),
            noop,
        ),
        (
            ApiRouteConfig(
                name="AddPerson",
                method="POST",
                path="/people",
                body_schema=Person,
                response_schema={201: Person, 409: make_error("conflict")},
            ),
            noop,
        ),
        (
            ApiRouteConfig(
                name="Tag",
                method="PUT",
                path="/people/{name}/tag",
                body_schema=defs_schema,
                response_schema={200: Person, 422: make_error("problem")},
            ),
            noop,
        ),
    ]
    return create_app(streams=[StreamConfig(name="people", schema=Person)], steps=steps)


def test_inline_document_is_valid_and_carries_every_declaration() -> None:
    document = build_openapi(inline_app().runtime.registry, title="People")
    validate_openapi(document)
    search = document["paths"]["/people"]["get"]
    assert search["description"] == "Find people by name."
    assert search["tags"] == ["people"]
    assert search["parameters"] == [
        {
            "name": "q",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "part of the name",
        }
    ]
    schemas = document["components"]["schemas"]
    # Nested pydantic models are hoisted and referenced, not inlined.
    assert schemas["Person"]["properties"]["address"] == {"$ref": "#/components/schemas/Address"}
    # Two models named Error: both kept, under distinct names.
    add = document["paths"]["/people"]["post"]["responses"]["409"]
    tag = document["paths"]["/people/{name}/tag"]["put"]
    ref_409 = add["content"]["application/json"]["schema"]["$ref"]
    ref_422 = tag["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref_409 != ref_422
    names = {ref.rsplit("/", 1)[1] for ref in (ref_409, ref_422)}
    assert {"conflict", "problem"} == {next(iter(schemas[name]["properties"])) for name in names}
    # A JSON Schema dict is used as given, its $defs hoisted and its refs rewritten.
    body = tag["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["tag"] == {"$ref": "#/components/schemas/Tag"}
    assert "$defs" not in body
    assert schemas["Tag"] == {"type": "string", "maxLength": 10}


# -- surge generate openapi ---------------------------------------------------------------------


def test_cli_writes_the_document(tmp_path: Path) -> None:
    target = tmp_path / "spec.json"
    done = subprocess.run(
        [SURGE, "generate", "openapi", "--dir", str(TODO), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text()) == openapi_for_project(TODO)


def test_cli_prints_to_stdout_and_refuses_unknown_kinds() -> None:
    done = subprocess.run(
        [SURGE, "generate", "openapi", "--dir", str(TODO), "-o", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["openapi"] == "3.1.0"
    unknown = subprocess.run(
        [SURGE, "generate", "nonsense"], capture_output=True, text=True, timeout=60, check=False
    )
    assert unknown.returncode == 2
    assert "expected: openapi" in unknown.stderr


def test_cli_names_a_broken_step_file(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "bad_step.py").write_text("config = {'type': 'api'}\nhandler = None\n")
    done = subprocess.run(
        [SURGE, "generate", "openapi", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "bad_step.py" in done.stderr


# -- serving: /openapi.json and /docs ------------------------------------------------------------


async def fetch(
    app: Any, path: str, *, root_path: str = "", method: str = "GET"
) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app, root_path=root_path)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, root_path + path)


async def test_routes_serve_the_document_of_the_live_registry() -> None:
    app = inline_app()
    docs = openapi_routes(app, title="People")
    response = await fetch(docs, "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_openapi(app.runtime.registry, title="People")
    assert docs.handles({"type": "http", "path": "/openapi.json"})
    assert docs.handles({"type": "http", "path": "/docs/swagger-ui.css"})
    assert not docs.handles({"type": "http", "path": "/people"})
    assert not docs.handles({"type": "websocket", "path": "/docs"})
    assert (await fetch(docs, "/openapi.json", method="POST")).status_code == 405


async def test_docs_page_loads_local_assets_only() -> None:
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("swagger-ui-bundle-v2 is not installed (required under CI=true)")
        pytest.skip("swagger-ui-bundle-v2 is not installed")
    docs = openapi_routes(inline_app())
    page = await fetch(docs, "/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert '"/openapi.json"' in page.text
    for asset in ("/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"):
        assert asset in page.text
        response = await fetch(docs, asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000
    assert (await fetch(docs, "/docs/../../etc/passwd")).status_code == 404


async def test_under_a_mount_prefix_urls_and_servers_use_it() -> None:
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        pytest.skip("swagger-ui-bundle-v2 is not installed")
    docs = openapi_routes(inline_app())
    page = await fetch(docs, "/docs", root_path="/rt")
    assert '"/rt/openapi.json"' in page.text and "/rt/docs/swagger-ui-bundle.js" in page.text
    document = (await fetch(docs, "/openapi.json", root_path="/rt")).json()
    assert document["servers"] == [{"url": "/rt"}]


# -- what schemathesis found --------------------------------------------------------------------


def test_a_405_names_the_allowed_methods() -> None:
    # schemathesis ST204 (RFC 9110): a 405 must carry Allow.
    with TestClient(TODO) as client:
        response = client.request("TRACE", "/todo")
        assert response.status_code == 405
        assert response.headers.get("allow") == "GET, POST"
        assert client.request("PATCH", "/todo/t1").headers.get("allow") == "DELETE, PUT"


def test_a_blank_description_is_refused_by_the_schema_the_document_shows() -> None:
    # schemathesis found it (ST202): the handler refused what the schema allowed. Now the
    # schema itself refuses it, so the document and the server agree.
    with TestClient(TODO) as client:
        for blank in ("", "   "):
            refused = client.post("/todo", json={"description": blank})
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid request body"
    spec = openapi_for_project(TODO)
    body = spec["paths"]["/todo"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = body["$ref"].rsplit("/", 1)[-1]
    description = spec["components"]["schemas"][name]["properties"]["description"]
    assert description["minLength"] == 1


def test_a_number_is_not_a_boolean() -> None:
    # schemathesis found it (ST201): {"isTyping": 0.0} was taken as false, though the document
    # says "boolean". Bodies are validated as their JSON Schema reads.
    with TestClient(TODO) as client:
        refused = client.post("/todo/typing", json={"userId": "u1", "isTyping": 0.0})
        assert refused.status_code == 400
        assert [e["loc"] for e in refused.json()["errors"]] == [["isTyping"]]
        taken = client.post("/todo/typing", json={"userId": "u1", "isTyping": False})
        assert taken.status_code == 202


class Booking(BaseModel):
    seats: int
    at: datetime.datetime
    ref: uuid.UUID


class LaxBooking(Booking):
    model_config = ConfigDict(strict=False)


def test_bodies_are_strict_json_unless_the_model_says_otherwise() -> None:
    async def book(req: Any, ctx: Any) -> ApiResponse:
        body = req.body
        return ApiResponse(200, {"seats": body.seats, "year": body.at.year, "ref": str(body.ref)})

    app = create_app(
        steps=[
            (ApiRouteConfig(name="Book", method="POST", path="/book", body_schema=Booking), book),
            (
                ApiRouteConfig(name="Lax", method="POST", path="/lax", body_schema=LaxBooking),
                book,
            ),
        ]
    )
    ref = "12345678-1234-5678-1234-567812345678"
    good = {"seats": 2, "at": "2026-12-01T10:00:00Z", "ref": ref}
    with TestClient(app) as client:
        # JSON has no datetime or UUID: their strings are what a strict JSON body carries.
        assert client.post("/book", json=good).json() == {"seats": 2, "year": 2026, "ref": ref}
        for field, wrong in (("seats", "2"), ("seats", 2.5), ("seats", True)):
            refused = client.post("/book", json={**good, field: wrong})
            assert refused.status_code == 400, (field, wrong)
            assert [e["loc"] for e in refused.json()["errors"]] == [[field]]
        # A model that chose lax validation keeps it.
        assert client.post("/lax", json={**good, "seats": "2"}).json()["seats"] == 2
