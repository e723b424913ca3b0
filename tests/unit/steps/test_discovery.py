"""Discovery of step files and the registry: what loads, and every error naming its file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from surge.errors import ConfigError
from surge.project import load_config
from surge.steps.discovery import discover
from surge.steps.registry import MethodNotAllowed, RouteMatch

STREAM = """
from pydantic import BaseModel
from surge import StreamConfig

class Todo(BaseModel):
    id: str
    description: str

config = StreamConfig(name="{name}", schema=Todo)
"""

STEP = """
from surge import ApiResponse, ApiRouteConfig

config = ApiRouteConfig(name="{name}", method="{method}", path="{path}")

async def handler(req, ctx):
    return ApiResponse(200, {{"step": "{name}"}})
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_discovers_streams_and_steps_recursively_including_dotted_names(tmp_path: Path) -> None:
    write(tmp_path, "steps/todo_stream.py", STREAM.format(name="todo"))
    write(tmp_path, "steps/chat/messages.stream.py", STREAM.format(name="chatMessage"))
    write(tmp_path, "steps/a_step.py", STEP.format(name="A", method="GET", path="/a"))
    write(tmp_path, "steps/deep/er/b.step.py", STEP.format(name="B", method="post", path="/b/:id"))
    write(tmp_path, "steps/helpers.py", "X = 1\n")  # not a step: ignored
    registry = discover(tmp_path)
    assert sorted(registry.streams) == ["chatMessage", "todo"]
    assert sorted(r.config.name for r in registry.routes) == ["A", "B"]
    found = registry.match("POST", "/b/42")
    assert isinstance(found, RouteMatch)
    assert found.path_params == {"id": "42"}
    assert registry.match("GET", "/b/42") == MethodNotAllowed(("POST",))
    assert registry.match("POST", "/nowhere") is None


def test_step_files_can_import_each_other_as_the_steps_package(tmp_path: Path) -> None:
    write(tmp_path, "steps/todo_stream.py", STREAM.format(name="todo"))
    write(
        tmp_path,
        "steps/use_step.py",
        """
        from steps.todo_stream import Todo
        from surge import ApiRouteConfig
        config = ApiRouteConfig(name="Use", method="POST", path="/use", body_schema=Todo)
        async def handler(req, ctx):
            return None
        """,
    )
    registry = discover(tmp_path)
    assert registry.routes[0].body_schema is not None


def test_file_without_config_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "steps/empty_step.py", "x = 1\n")
    with pytest.raises(ConfigError, match="has no `config`") as info:
        discover(tmp_path)
    assert info.value.path == path


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "steps/bad_step.py", "x = 1\ndef broken(:\n")
    with pytest.raises(ConfigError, match="line 2: syntax error") as info:
        discover(tmp_path)
    assert info.value.path == path


def test_import_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "steps/bad_step.py", "import os\nimport no_such_module_surge\n")
    with pytest.raises(ConfigError, match=r"line 2: import failed: ModuleNotFoundError"):
        discover(tmp_path)


def test_duplicate_stream_names_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "steps/a_stream.py", STREAM.format(name="todo"))
    second = write(tmp_path, "steps/b_stream.py", STREAM.format(name="todo"))
    with pytest.raises(ConfigError, match="defined twice") as info:
        discover(tmp_path)
    assert str(first) in str(info.value) and str(second) in str(info.value)


def test_duplicate_step_names_and_routes_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "steps/a_step.py", STEP.format(name="Same", method="GET", path="/a"))
    write(tmp_path, "steps/b_step.py", STEP.format(name="Same", method="GET", path="/b"))
    with pytest.raises(ConfigError, match="used twice"):
        discover(tmp_path)
    (tmp_path / "steps/b_step.py").unlink()
    write(tmp_path, "steps/c_step.py", STEP.format(name="C", method="GET", path="/a"))
    with pytest.raises(ConfigError, match=r"route GET /a is defined twice"):
        discover(tmp_path)


def test_same_route_shape_with_other_param_names_is_a_duplicate(tmp_path: Path) -> None:
    write(tmp_path, "steps/a_step.py", STEP.format(name="A", method="GET", path="/t/:id"))
    write(tmp_path, "steps/b_step.py", STEP.format(name="B", method="GET", path="/t/{key}"))
    with pytest.raises(ConfigError, match="defined twice"):
        discover(tmp_path)


def test_static_segments_win_over_params(tmp_path: Path) -> None:
    write(tmp_path, "steps/a_step.py", STEP.format(name="ById", method="POST", path="/t/:id"))
    write(tmp_path, "steps/b_step.py", STEP.format(name="Typing", method="POST", path="/t/typing"))
    found = discover(tmp_path).match("POST", "/t/typing")
    assert isinstance(found, RouteMatch)
    assert found.route.config.name == "Typing"


def test_unknown_path_and_wrong_method(tmp_path: Path) -> None:
    write(tmp_path, "steps/a_step.py", STEP.format(name="A", method="GET", path="/a"))
    registry = discover(tmp_path)
    assert registry.match("GET", "/nope") is None
    assert registry.match("DELETE", "/a") == MethodNotAllowed(("GET",))


def test_motia_dict_configs_are_accepted(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/todo_stream.py",
        """
        config = {"name": "todo", "schema": {"type": "object",
                  "properties": {"id": {"type": "string"}}}, "baseConfig": {"storageType": "default"}}
        """,
    )
    write(
        tmp_path,
        "steps/create_step.py",
        """
        config = {"type": "api", "name": "Create", "method": "POST", "path": "/todo",
                  "bodySchema": {"type": "object", "required": ["description"],
                                 "properties": {"description": {"type": "string"}}},
                  "responseSchema": {"200": {"type": "object"}}, "emits": []}
        async def handler(req, ctx):
            return {"status": 200, "body": req.body}
        """,
    )
    registry = discover(tmp_path)
    route = registry.routes[0]
    assert route.config.response_schema is not None and 200 in route.config.response_schema
    assert route.body_schema is not None
    assert route.body_schema.validate_json({"description": "x"}) == {"description": "x"}


def test_unknown_step_type_is_refused_naming_file_line_and_type(tmp_path: Path) -> None:
    path = write(tmp_path, "steps/ev_step.py", 'config = {\n  "type": "noop",\n  "name": "E"}\n')
    with pytest.raises(ConfigError, match=r"line 2: unknown step type 'noop'") as info:
        discover(tmp_path)
    assert info.value.path == path


def test_sync_handler_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        "steps/a_step.py",
        """
        from surge import ApiRouteConfig
        config = ApiRouteConfig(name="A", method="GET", path="/a")
        def handler(req, ctx):
            return None
        """,
    )
    with pytest.raises(ConfigError, match="must be `async def`"):
        discover(tmp_path)


def test_invalid_json_schema_in_stream_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "steps/x_stream.py", 'config = {"name": "x", "schema": {"type": 12}}\n')
    with pytest.raises(ConfigError, match="invalid JSON Schema"):
        discover(tmp_path)


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    assert load_config(tmp_path).stream_auth is None  # no file: defaults
    path = write(tmp_path, "surge.config.py", "x = 1\n")
    with pytest.raises(ConfigError, match="defines no `config`") as info:
        load_config(tmp_path)
    assert info.value.path == path
    write(tmp_path, "surge.config.py", "config = {'stream_auth': None}\n")
    with pytest.raises(ConfigError, match=r"must be a surge\.Config"):
        load_config(tmp_path)
    write(tmp_path, "surge.config.py", "from surge import Config\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="line 2: RuntimeError: boom"):
        load_config(tmp_path)
