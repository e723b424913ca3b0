"""``surge dev | start | create``: serve a project, or make a new one from the todo template."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.logging import RichHandler

from surge.errors import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(help="Surge: real-time streams for Python backends.", no_args_is_help=True)
# soft_wrap: never fold a file path or an error across lines (they get copied and grepped).
console = Console(stderr=True, soft_wrap=True)
TEMPLATE = Path(__file__).parent / "templates" / "todo"
_TEMPLATE_IGNORE = shutil.ignore_patterns(
    "node_modules", ".surge", "__pycache__", "dist", "*.pyc", ".vite"
)


def _setup_logging(level: str, *, pretty: bool) -> None:
    """Rich output for `surge dev`; plain lines for `surge start` (Rich costs ~1 ms a record,
    which at info level was most of a POST's CPU: bench/README.md)."""
    handler: logging.Handler
    if pretty:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=True)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, handlers=[handler], force=True)


def _serve(
    directory: Path,
    host: str,
    port: int,
    *,
    reload: bool,
    log_level: str,
    workers: int = 1,
    workbench: bool = False,
) -> None:
    from surge.app import create_app
    from surge.server.serve import PROJECT_DIR_ENV, uvicorn_config

    _setup_logging(log_level, pretty=reload)
    try:
        surge_app = create_app(directory, reload=reload, workbench=workbench)
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    surge_app.tune_gc = True
    registry = surge_app.runtime.registry
    console.print(
        f"[bold]surge[/] serving [cyan]{directory}[/]: {len(registry.streams)} stream(s), "
        f"{len(registry.routes)} API step(s), {len(registry.events)} event step(s), "
        f"{len(registry.crons)} cron step(s) on [green]http://{host}:{port}[/] "
        f"(WebSocket on the same port){' with hot reload' if reload else ''}"
    )
    for route in registry.routes:
        console.print(
            f"  {route.config.method:<6} {route.config.path}  [dim]{route.config.name}[/]"
        )
    if workbench:
        console.print(f"  Workbench: [green]http://{host}:{port}/__surge/workbench/[/]")
    if workers > 1:
        if not getattr(surge_app.runtime.adapter, "is_distributed", False):
            console.print(
                "[bold red]error:[/] --workers > 1 needs a storage adapter that fans changes out "
                "across processes: configure the Redis adapter "
                "(Config(adapters=Adapters(streams=RedisStreamAdapter(...)))). The default file "
                "store serves one process."
            )
            raise typer.Exit(2)
        # Each worker builds its own app (and its own feed listener) from the project directory.
        os.environ[PROJECT_DIR_ENV] = str(directory)
        config = uvicorn_config(
            "surge.server.serve:app_from_env",
            host=host,
            port=port,
            log_level=log_level,
            limits=surge_app.runtime.config.limits,
            factory=True,
            workers=workers,
        )
        console.print(f"  {workers} worker processes")
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(uvicorn_config(surge_app, host=host, port=port, log_level=log_level))
    server.run()
    if not server.started:
        raise typer.Exit(1)


Dir = Annotated[Path, typer.Option("--dir", "-d", help="Project directory.")]
Port = Annotated[int, typer.Option("--port", "-p", help="Port for HTTP and WebSocket.")]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")]


@app.command()
def dev(
    port: Port = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    directory: Dir = Path("."),
    log_level: LogLevel = "info",
) -> None:
    """Serve the project with hot reload of steps/ and the Workbench at /__surge/workbench/."""
    _serve(directory.resolve(), host, port, reload=True, log_level=log_level, workbench=True)


@app.command()
def start(
    port: Port = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "0.0.0.0",
    directory: Dir = Path("."),
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: LogLevel = "info",
) -> None:
    """Serve the project for production (no reload)."""
    if workers < 1:
        console.print("[bold red]error:[/] --workers must be at least 1")
        raise typer.Exit(2)
    _serve(directory.resolve(), host, port, reload=False, log_level=log_level, workers=workers)


@app.command("generate-types")
def generate_types_command(
    directory: Dir = Path("."),
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "types.d.ts"
    ),
) -> None:
    """Write TypeScript types for the front end from the stream, step and auth schemas."""
    from surge.project import load_config
    from surge.steps.discovery import discover
    from surge.typegen import generate_types

    root = directory.resolve()
    try:
        text = generate_types(discover(root), load_config(root))
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    target = output if output.is_absolute() else root / output
    target.write_text(text)
    console.print(f"wrote [cyan]{target}[/]")


# --- surge generate openapi (issue 12 item 3; surge/openapi.py) ------------------------------
@app.command("generate")
def generate_command(
    what: Annotated[str, typer.Argument(help="What to generate: openapi.")],
    directory: Dir = Path("."),
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write ('-' for stdout).")
    ] = Path("openapi.json"),
) -> None:
    """Generate a file from the project's steps: `surge generate openapi [-o openapi.json]`."""
    import json

    if what != "openapi":
        console.print(f"[bold red]error:[/] cannot generate {what!r}; expected: openapi")
        raise typer.Exit(2)
    from surge.openapi import openapi_for_project

    root = directory.resolve()
    try:
        text = json.dumps(openapi_for_project(root), indent=2) + "\n"
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    if str(output) == "-":
        sys.stdout.write(text)
        return
    target = output if output.is_absolute() else root / output
    target.write_text(text)
    console.print(f"wrote [cyan]{target}[/]")


# --- end of surge generate openapi ---------------------------------------------------------------


@app.command()
def emit(
    topic: Annotated[str, typer.Option("--topic", "-t", help="Topic to emit.")],
    data: Annotated[str, typer.Option("--data", help="The message data, as JSON.")] = "{}",
    group: Annotated[
        str | None, typer.Option("--group", help="messageGroupId (FIFO steps).")
    ] = None,
    port: Port = 3000,
    host: Annotated[str, typer.Option(help="Host of the running `surge dev`.")] = "127.0.0.1",
) -> None:
    """Emit a message to a running `surge dev` (its subscribing steps handle it); prints the ids."""
    import json
    import urllib.error
    import urllib.request

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        console.print(f"[bold red]error:[/] --data is not JSON: {exc}")
        raise typer.Exit(2) from exc
    event = {"topic": topic, "data": payload}
    if group is not None:
        event["messageGroupId"] = group
    netloc = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(
        f"http://{netloc}:{port}/__surge/api/emit",
        data=json.dumps(event).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        hint = " (is it `surge dev`? `surge start` has no emit endpoint)" if exc.code == 404 else ""
        console.print(f"[bold red]error:[/] the server answered {exc.code}{hint}: {detail}")
        raise typer.Exit(1) from exc
    except (urllib.error.URLError, OSError) as exc:
        console.print(f"[bold red]error:[/] no surge dev answers on {netloc}:{port}: {exc}")
        raise typer.Exit(1) from exc
    subscribers = ", ".join(answer.get("subscribers") or []) or "no step subscribes to it"
    console.print(f"emitted [cyan]{topic}[/] (trace {answer.get('traceId')}) to {subscribers}")
    for message_id in answer.get("messageIds") or []:
        print(message_id)


@app.command()
def create(name: Annotated[str, typer.Argument(help="Directory of the new project.")]) -> None:
    """Create a new project from the todo template."""
    target = Path(name)
    if target.exists() and any(target.iterdir()):
        console.print(f"[bold red]error:[/] {target} exists and is not empty")
        raise typer.Exit(1)
    shutil.copytree(TEMPLATE, target, ignore=_TEMPLATE_IGNORE, dirs_exist_ok=True)
    console.print(f"Created [cyan]{target}[/]. Next:\n  cd {name}\n  surge dev")


def main() -> None:
    """Entry point of the ``surge`` script."""
    # Step files import `steps.*` from the project root.
    sys.path.insert(0, os.getcwd())
    app()
