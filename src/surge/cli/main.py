"""``surge dev | start | create``: serve a project, or make a new one from the todo template."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pydantic
import typer
import uvicorn
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from surge.cli.access import AccessLog
from surge.errors import ConfigError, SurgeError

__all__ = ["app", "main"]

# No locals in a crash report: they can hold tokens and secrets from surge.config.py.
app = typer.Typer(
    help="Surge: real-time streams for Python backends.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
# soft_wrap: never fold a file path or an error across lines (they get copied and grepped).
console = Console(stderr=True, soft_wrap=True)
TEMPLATE = Path(__file__).parent / "templates" / "project"
_TEMPLATE_IGNORE = shutil.ignore_patterns(
    "node_modules", ".surge", "__pycache__", "dist", "*.pyc", ".pytest_cache"
)
# Files shipped under another name: package data globs skip dotfiles, and linters would parse a
# pyproject.toml that still holds placeholders.
_TEMPLATE_RENAMES = {"gitignore": ".gitignore", "pyproject.toml.template": "pyproject.toml"}
SURGE_SOURCE_ENV = "SURGE_CREATE_SOURCE"
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _setup_logging(level: str, *, pretty: bool, log_format: str = "plain") -> None:
    """Rich output for `surge dev` on a terminal; plain lines otherwise (Rich costs ~1 ms a record,
    which at info level was most of a POST's CPU: bench/README.md; and off a terminal it would
    wrap every record at 80 columns, folding paths that get copied and grepped); JSON lines with
    ``--log-format json`` (``surge.server.logs.JsonFormatter``)."""
    if log_format == "json":
        from surge.server.logs import configure_logging

        configure_logging(level, "json")
        return
    handler: logging.Handler
    if pretty and console.is_terminal:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=True)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, handlers=[handler], force=True)


_json_output = False  # --log-format json: what the CLI itself says goes out as JSON lines too
_cli_logger = logging.getLogger("surge.cli")


def _error(message: str) -> None:
    """One ``error: ...`` line (markup in ``message`` is not interpreted)."""
    if _json_output:
        _cli_logger.error("%s", message)
        return
    console.print(f"[bold red]error:[/] {escape(message)}")


def _say(markup: str) -> None:
    """A line of the banner: Rich markup on the console, or a JSON log line."""
    if _json_output:
        from rich.text import Text

        _cli_logger.info("%s", Text.from_markup(markup).plain)
        return
    console.print(markup)


def _log_format(option: str | None) -> str | None:
    """``--log-format``, else ``$SURGE_LOG_FORMAT``, else None (the project's Config decides)."""
    from surge.server.logs import LOG_FORMAT_ENV, LOG_FORMATS

    value = option or os.environ.get(LOG_FORMAT_ENV) or None
    if value is not None and value not in LOG_FORMATS:
        console.print(
            f"[bold red]error:[/] --log-format must be one of {', '.join(LOG_FORMATS)}, "
            f"not {escape(value)!r}"
        )
        raise typer.Exit(2)
    return value


def one_line(exc: BaseException) -> str:
    """An expected startup error as one readable line (pydantic's errors span several)."""
    from surge.steps.discovery import describe_exception

    if isinstance(exc, pydantic.ValidationError):
        return describe_exception(exc)
    text = str(exc)
    cause = exc.__cause__
    if isinstance(exc, ConfigError) and isinstance(cause, pydantic.ValidationError):
        text = text.replace(f"ValidationError: {cause}", describe_exception(cause))
    return " ".join(text.split())


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_started`` once the app's startup is complete and the
    sockets listen (so nothing claims to be serving before it is)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self._on_started()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, or exit with one line saying why there is none."""
    from surge.server.serve import bind_socket

    try:
        return bind_socket(host, port)
    except OSError as exc:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            _error(
                f"cannot listen on {netloc}: the port is in use; stop the other server or "
                "choose another port with --port"
            )
        else:
            _error(f"cannot listen on {netloc}: {exc.strerror or exc}")
        raise typer.Exit(1) from exc


def _serve(
    directory: Path,
    host: str,
    port: int,
    *,
    reload: bool,
    log_level: str,
    workers: int = 1,
    workbench: bool = False,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    log_format: str | None = None,
) -> None:
    global _json_output
    from surge.app import create_app
    from surge.server.logs import LOG_FORMAT_ENV, LOG_FORMATS, LOG_LEVEL_ENV
    from surge.server.metrics_settings import METRICS_HOST_ENV, METRICS_PORT_ENV, WORKERS_ENV
    from surge.server.serve import PROJECT_DIR_ENV, uvicorn_config

    chosen_format = _log_format(log_format)
    _json_output = chosen_format == "json"
    _setup_logging(log_level, pretty=reload, log_format=chosen_format or "plain")
    # Through the environment, so that --workers' processes see them too.
    os.environ[WORKERS_ENV] = str(workers)
    if metrics_port is not None:
        os.environ[METRICS_PORT_ENV] = str(metrics_port)
    if metrics_host is not None:
        os.environ[METRICS_HOST_ENV] = metrics_host
    elif metrics_port is not None:
        os.environ.setdefault(METRICS_HOST_ENV, host)
    try:
        surge_app = create_app(directory, reload=reload, workbench=workbench)
    except (SurgeError, pydantic.ValidationError) as exc:
        _error(one_line(exc))
        raise typer.Exit(1) from exc
    surge_app.tune_gc = True
    if chosen_format is None:  # surge.config.py may ask for JSON lines
        chosen_format = surge_app.runtime.config.log_format
        if chosen_format not in LOG_FORMATS:
            _error(f"Config.log_format must be one of {', '.join(LOG_FORMATS)}")
            raise typer.Exit(2)
        if chosen_format == "json":
            _json_output = True
            _setup_logging(log_level, pretty=reload, log_format="json")
    os.environ[LOG_FORMAT_ENV] = chosen_format  # for --workers' processes
    os.environ[LOG_LEVEL_ENV] = log_level
    # JSON: uvicorn's loggers get no handlers of their own and reach the root's JSON handler.
    log_config = {"log_config": None} if chosen_format == "json" else {}
    registry = surge_app.runtime.registry
    if workers > 1 and not getattr(surge_app.runtime.adapter, "is_distributed", False):
        _error(
            "--workers > 1 needs a storage adapter that fans changes out across processes: "
            "configure the Redis adapter "
            "(Config(adapters=Adapters(streams=RedisStreamAdapter(...)))). The default file "
            "store serves one process."
        )
        raise typer.Exit(2)
    sock = _listen(host, port)
    bound_port = sock.getsockname()[1]
    netloc = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"

    def banner() -> None:
        _say(
            f"[bold]surge[/] serving [cyan]{escape(str(directory))}[/]: "
            f"{len(registry.streams)} stream(s), "
            f"{len(registry.routes)} API step(s), {len(registry.events)} event step(s), "
            f"{len(registry.crons)} cron step(s) on [green]http://{netloc}[/] "
            f"(WebSocket on the same port){' with hot reload' if reload else ''}"
        )
        for route in registry.routes:
            _say(
                f"  {route.config.method:<6} {escape(route.config.path)}  "
                f"[dim]{escape(route.config.name)}[/]"
            )
        if workbench:
            _say(f"  Workbench: [green]http://{netloc}/__surge/workbench/[/]")
        if workers > 1:
            _say(f"  {workers} worker processes")
        if metrics_port is not None:
            mhost = os.environ.get(METRICS_HOST_ENV, host)
            mnet = f"[{mhost}]" if ":" in mhost else mhost
            last = f"-{metrics_port + workers - 1}" if workers > 1 else ""
            _say(
                f"  Metrics: [green]http://{mnet}:{metrics_port}{last}/metrics[/]"
                f"{' (one port per worker)' if workers > 1 else ''}"
            )

    if workers > 1:
        # Each worker builds its own app (and its own feed listener) from the project directory.
        os.environ[PROJECT_DIR_ENV] = str(directory)
        config = uvicorn_config(
            "surge.app:worker_app",
            host=host,
            port=bound_port,
            log_level=log_level,
            limits=surge_app.runtime.config.limits,
            factory=True,
            workers=workers,
            **log_config,
        )
        from uvicorn.supervisors import Multiprocess

        banner()  # the socket is bound; each worker reports its own startup
        Multiprocess(config, sockets=[sock]).run()
        return
    config = uvicorn_config(
        surge_app, host=host, port=bound_port, log_level=log_level, **log_config
    )
    if reload:  # surge dev: one access line per HTTP request
        config.app = AccessLog(surge_app)
    server = _Server(config, on_started=banner)
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(1)


Dir = Annotated[Path, typer.Option("--dir", "-d", help="Project directory.")]
Port = Annotated[int, typer.Option("--port", "-p", help="Port for HTTP and WebSocket.")]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve /metrics on this port instead of the app's (with --workers N: N ports).",
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="plain or json (one JSON object per line); default: $SURGE_LOG_FORMAT, "
        "else Config.log_format, else plain.",
    ),
]
MetricsHost = Annotated[
    str | None,
    typer.Option("--metrics-host", help="Interface of the metrics port (default: --host)."),
]


@app.command()
def dev(
    port: Port = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    directory: Dir = Path("."),
    log_level: LogLevel = "info",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
    log_format: LogFormat = None,
) -> None:
    """Serve the project with hot reload of steps/ and the Workbench at /__surge/workbench/."""
    _serve(
        directory.resolve(),
        host,
        port,
        reload=True,
        log_level=log_level,
        workbench=True,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
    )


@app.command()
def start(
    port: Port = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "0.0.0.0",
    directory: Dir = Path("."),
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: LogLevel = "info",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
    log_format: LogFormat = None,
) -> None:
    """Serve the project for production (no reload)."""
    if workers < 1:
        console.print("[bold red]error:[/] --workers must be at least 1")
        raise typer.Exit(2)
    _serve(
        directory.resolve(),
        host,
        port,
        reload=False,
        log_level=log_level,
        workers=workers,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
    )


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


def surge_requirement(source: str | None) -> str:
    """The project's dependency on surge: ``surge``, or ``surge @ file:///...`` for a checkout."""
    if not source:
        return "surge"
    if "://" in source:
        return f"surge @ {source}"
    return f"surge @ {Path(source).expanduser().resolve().as_uri()}"


def write_project(target: Path, *, surge_source: str | None = None) -> None:
    """Copy the project template to ``target`` (which must not exist or be empty)."""
    values = {"{{name}}": target.name, "{{surge_requirement}}": surge_requirement(surge_source)}
    shutil.copytree(TEMPLATE, target, ignore=_TEMPLATE_IGNORE, dirs_exist_ok=True)
    for path in sorted(target.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        path.write_text(text, encoding="utf-8")
    for shipped, real in _TEMPLATE_RENAMES.items():
        (target / shipped).rename(target / real)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Directory of the new project.")],
    surge_source: Annotated[
        str | None,
        typer.Option(
            "--surge-source",
            envvar=SURGE_SOURCE_ENV,
            help="Depend on surge from this path or URL (a checkout) instead of the package index.",
        ),
    ] = None,
) -> None:
    """Create a new project: steps, a live page in public/, tests, pyproject.toml, README."""
    target = Path(name)
    if not _PROJECT_NAME.match(target.resolve().name):
        console.print(
            f"[bold red]error:[/] {target.resolve().name!r} is not a project name "
            "(letters, digits, '.', '_' and '-')"
        )
        raise typer.Exit(2)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        console.print(f"[bold red]error:[/] {target} exists and is not empty")
        raise typer.Exit(1)
    write_project(target.resolve(), surge_source=surge_source)
    console.print(
        f"Created [cyan]{target}[/]. Next:\n"
        f"  cd {name}\n"
        "  python -m venv .venv && . .venv/bin/activate && pip install -e '.\\[dev]'\n"
        "  surge dev     # then open http://localhost:3000/\n"
        "  pytest"
    )


def main() -> None:
    """Entry point of the ``surge`` script."""
    # Step files import `steps.*` from the project root.
    sys.path.insert(0, os.getcwd())
    app()
