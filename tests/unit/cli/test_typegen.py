"""``surge generate-types``: JSON Schema to TypeScript, checked by the TypeScript compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from conftest import require_component
from surge import ApiRouteConfig, Config, StreamAuth, StreamConfig
from surge.steps.discovery import discover
from surge.steps.registry import ApiRoute, Registry
from surge.typegen import generate_types, schema_to_ts

ROOT = Path(__file__).resolve().parents[3]
TSC = ROOT / "examples" / "todo" / "web" / "node_modules" / ".bin" / "tsc"


class Tag(BaseModel):
    label: str


class Item(BaseModel):
    id: str
    count: int
    ratio: float | None = None
    tags: list[Tag] = []
    kind: str = "a"


def test_pydantic_schema_becomes_an_object_type_with_optional_and_nullable_fields() -> None:
    defs: dict[str, str] = {}
    text = schema_to_ts(Item.model_json_schema(), defs)
    assert "id: string" in text
    assert "count: number" in text
    assert "ratio?: number | null" in text
    assert "tags?: Array<Tag>" in text
    assert defs["Tag"] == "{\n  label: string\n}"


def test_json_schema_enums_consts_maps_and_unknowns() -> None:
    defs: dict[str, str] = {}
    schema = {
        "type": "object",
        "required": ["plan", "meta", "v"],
        "properties": {
            "plan": {"enum": ["free", "pro"]},
            "v": {"const": 1},
            "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
            "any": {},
            "weird-name": {"type": ["string", "null"]},
        },
    }
    text = schema_to_ts(schema, defs)
    assert 'plan: "free" | "pro"' in text
    assert "v: 1" in text
    assert "meta: Record<string, number>" in text
    assert "any?: unknown" in text
    assert '"weird-name"?: string | null' in text


def _registry() -> Registry:
    async def handler(req: object, ctx: object) -> None:
        return None

    return Registry.build(
        [
            (StreamConfig(name="todo", schema=Item), None),
            (
                StreamConfig(
                    name="note",
                    schema={"type": "object", "properties": {"text": {"type": "string"}}},
                ),
                None,
            ),
        ],
        [
            ApiRoute(
                ApiRouteConfig(
                    name="create-todo",
                    method="POST",
                    path="/todo",
                    body_schema=Tag,
                    response_schema={
                        200: Item,
                        400: {"type": "object", "properties": {"error": {"type": "string"}}},
                    },
                ),
                handler,
            )
        ],
    )


def test_generated_file_names_streams_auth_context_and_steps() -> None:
    config = Config(stream_auth=StreamAuth(authenticate=lambda r: None, context_schema=Tag))
    text = generate_types(_registry(), config)
    assert "export interface StreamItems {\n  note: NoteItem\n  todo: TodoItem\n}" in text
    assert "export type NoteItem = {\n  text?: string\n} & { id: string }" in text
    assert "export type StreamAuthContext = {\n  label: string\n}" in text
    assert "export type CreateTodoBody = {" in text
    assert "export type CreateTodoResponse400 = {" in text
    assert "export type StreamAuthContext = null" in generate_types(_registry(), Config())


def test_generated_types_compile_with_typescript(tmp_path: Path) -> None:
    require_component(TSC.exists(), f"TypeScript is not installed at {TSC} (make web installs it)")
    require_component(shutil.which("node"), "node is not installed")
    registry = discover(ROOT / "examples" / "todo")
    types = tmp_path / "types.d.ts"
    types.write_text(generate_types(registry, Config()))
    usage = tmp_path / "use.ts"
    usage.write_text(
        'import type { StreamItems, CreateTodoBody } from "./types"\n'
        "const t: StreamItems['todo'] = { id: 'a', description: 'd', createdAt: 'now' }\n"
        "const b: CreateTodoBody = { description: 'x' }\n"
        "export const out = [t.id, b.description]\n"
    )
    done = subprocess.run(
        [str(TSC), "--noEmit", "--strict", str(types), str(usage)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_writes_types_for_the_chat_example_and_names_a_broken_file(tmp_path: Path) -> None:
    import sys

    surge = Path(sys.executable).parent / "surge"
    project = tmp_path / "chat"
    shutil.copytree(ROOT / "examples" / "chat", project, ignore=shutil.ignore_patterns(".surge"))
    done = subprocess.run(
        [str(surge), "generate-types", "-d", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = (project / "types.d.ts").read_text()
    assert "export type StreamAuthContext = {\n  userId: string" in text
    assert "chatMessage: ChatMessageItem" in text
    (project / "steps" / "broken_step.py").write_text("def oops(:\n")
    done = subprocess.run(
        [str(surge), "generate-types", "-d", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "broken_step.py: line 1: syntax error" in done.stderr
