"""The Workbench's view of a registry: endpoints with params and schemas, in a stable order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from surge import ApiRouteConfig
from surge.steps.registry import ApiRoute, Registry
from surge.workbench.describe import describe_endpoints


class Body(BaseModel):
    name: str


async def handler(req: Any, ctx: Any) -> None:
    return None


def test_endpoints_are_sorted_and_carry_params_schemas_and_relative_sources(tmp_path: Path) -> None:
    routes = [
        ApiRoute(ApiRouteConfig(name="Del", method="DELETE", path="/a/:id"), handler),
        ApiRoute(
            ApiRouteConfig(
                name="Put",
                method="put",
                path="/a/{id}/b/:sub",
                body_schema=Body,
                response_schema={404: {"type": "object"}, 200: Body},
            ),
            handler,
            source=tmp_path / "steps" / "put_step.py",
        ),
        ApiRoute(ApiRouteConfig(name="Get", method="GET", path="/a/:id"), handler, Path("/x.py")),
    ]
    described = describe_endpoints(Registry.build([], routes), tmp_path)
    assert [(e["name"], e["method"]) for e in described] == [
        ("Get", "GET"),
        ("Del", "DELETE"),
        ("Put", "PUT"),
    ]
    put = described[2]
    assert put["pathParams"] == ["id", "sub"]
    assert put["bodySchema"]["properties"] == {"name": {"title": "Name", "type": "string"}}
    assert list(put["responseSchemas"]) == ["200", "404"]
    assert put["source"] == str(Path("steps") / "put_step.py")
    assert described[0]["source"] == "/x.py"
    assert described[1]["source"] is None
    assert described[1]["bodySchema"] is None
