"""The ``surge`` commands (``dev``, ``start``, ``reload``, ``create``, ``generate``, ``emit``).

``surge start`` runs the supervisor (``surge.cli.master``) and its worker processes
(``surge.cli.worker``); ``surge dev`` serves in this process, with hot reload. Heavy imports
(the framework, pydantic, uvicorn) happen inside the commands that need them, so the
supervisor starts its first worker without loading them.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["app"]

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
        from rich.logging import RichHandler

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


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, or exit with one line saying why there is none."""
    from surge.cli.spawn import bind_listener

    try:
        return bind_listener(host, port)
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


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _app_summary(surge_app: Any) -> dict[str, Any]:
    registry = surge_app.runtime.registry
    return {
        "streams": len(registry.streams),
        "routes": [[r.config.method, r.config.path, r.config.name] for r in registry.routes],
        "events": len(registry.events),
        "crons": len(registry.crons),
    }


def _banner(
    directory: Path,
    summary: dict[str, Any],
    host: str,
    port: int,
    *,
    reload: bool = False,
    workbench: bool = False,
    workers: int = 1,
    metrics_port: int | None = None,
) -> None:
    """The serving banner: once the app started and the socket accepts connections."""
    from surge.server.metrics_settings import METRICS_HOST_ENV

    netloc = _netloc(host, port)
    _say(
        f"[bold]surge[/] serving [cyan]{escape(str(directory))}[/]: "
        f"{summary.get('streams', 0)} stream(s), "
        f"{len(summary.get('routes', []))} API step(s), {summary.get('events', 0)} event "
        f"step(s), {summary.get('crons', 0)} cron step(s) on [green]http://{netloc}[/] "
        f"(WebSocket on the same port){' with hot reload' if reload else ''}"
    )
    for method, path, name in summary.get("routes", []):
        _say(f"  {method:<6} {escape(path)}  [dim]{escape(name)}[/]")
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


def _metrics_env(
    workers: int, host: str, metrics_port: int | None, metrics_host: str | None
) -> dict[str, str]:
    """The metrics settings for the serving processes (``surge.server.metrics_settings``)."""
    from surge.server.metrics_settings import METRICS_HOST_ENV, METRICS_PORT_ENV, WORKERS_ENV

    env = {WORKERS_ENV: str(workers)}
    if metrics_port is not None:
        env[METRICS_PORT_ENV] = str(metrics_port)
        env[METRICS_HOST_ENV] = metrics_host or os.environ.get(METRICS_HOST_ENV) or host
    elif metrics_host is not None:
        env[METRICS_HOST_ENV] = metrics_host
    return env


def _serve_dev(
    directory: Path,
    host: str,
    port: int,
    *,
    log_level: str,
    metrics_port: int | None,
    metrics_host: str | None,
    log_format: str | None,
) -> None:
    """`surge dev`: one process with hot reload and the Workbench."""
    global _json_output
    import pydantic

    from surge.app import create_app
    from surge.cli.access import AccessLog
    from surge.cli.worker import one_line
    from surge.errors import SurgeError
    from surge.server.logs import LOG_FORMATS
    from surge.server.serve import SurgeServer, uvicorn_config

    chosen_format = _log_format(log_format)
    _json_output = chosen_format == "json"
    _setup_logging(log_level, pretty=True, log_format=chosen_format or "plain")
    os.environ.update(_metrics_env(1, host, metrics_port, metrics_host))
    try:
        surge_app = create_app(directory, reload=True, workbench=True)
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
            _setup_logging(log_level, pretty=True, log_format="json")
    # JSON: uvicorn's loggers get no handlers of their own and reach the root's JSON handler.
    log_config: dict[str, Any] = {"log_config": None} if chosen_format == "json" else {}
    summary = _app_summary(surge_app)
    sock = _listen(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn_config(
        surge_app, host=host, port=bound_port, log_level=log_level, **log_config
    )
    config.app = AccessLog(surge_app)  # one access line per HTTP request
    server = SurgeServer(
        config,
        app=surge_app,
        on_started=lambda: _banner(
            directory,
            summary,
            host,
            bound_port,
            reload=True,
            workbench=True,
            metrics_port=metrics_port,
        ),
    )
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(1)


def _serve_start(
    directory: Path,
    host: str,
    port: int,
    *,
    log_level: str,
    workers: int,
    drain_timeout: float,
    pid_file: Path | None,
    metrics_port: int | None,
    metrics_host: str | None,
    log_format: str | None,
) -> None:
    """`surge start`: the supervisor and its workers (``surge.cli.master``)."""
    global _json_output
    from surge.cli.master import MasterSettings, Reporter, run_master
    from surge.cli.spawn import take_early_socket
    from surge.server.logs import LOG_FORMAT_ENV, LOG_LEVEL_ENV

    chosen_format = _log_format(log_format)
    _json_output = chosen_format == "json"
    _setup_logging(log_level, pretty=False, log_format=chosen_format or "plain")
    # Bound already by the entry point (surge.cli.spawn), or now: a port in use is one line.
    sock = take_early_socket(host, port) or _listen(host, port)
    env = _metrics_env(workers, host, metrics_port, metrics_host)
    env[LOG_LEVEL_ENV] = log_level
    if chosen_format is not None:
        env[LOG_FORMAT_ENV] = chosen_format
    settings = MasterSettings(
        directory=directory,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        drain_timeout=drain_timeout,
        pid_file=pid_file,
        env=env,
    )

    def serving(summary: dict[str, Any], bound_port: int) -> None:
        global _json_output
        if chosen_format is None and summary.get("log_format") == "json":
            _json_output = True  # from surge.config.py: the supervisor's lines follow it
            _setup_logging(log_level, pretty=False, log_format="json")
        _banner(directory, summary, host, bound_port, workers=workers, metrics_port=metrics_port)

    code = run_master(settings, sock, Reporter(error=_error, serving=serving))
    if code:
        raise typer.Exit(code)


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


DrainTimeout = Annotated[
    float,
    typer.Option(
        "--drain-timeout",
        envvar="SURGE_DRAIN_TIMEOUT",
        help="Seconds a stop or reload may take to finish requests and background work.",
    ),
]
PidFile = Annotated[
    Path | None,
    typer.Option(
        "--pid-file", help="Pid file for `surge reload` [default: .surge/surge-PORT.pid]."
    ),
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
    _serve_dev(
        directory.resolve(),
        host,
        port,
        log_level=log_level,
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
    drain_timeout: DrainTimeout = 10.0,
    pid_file: PidFile = None,
) -> None:
    """Serve the project for production: SIGHUP or `surge reload` reloads it with no downtime,
    SIGTERM drains and stops it."""
    if workers < 1:
        console.print("[bold red]error:[/] --workers must be at least 1")
        raise typer.Exit(2)
    if drain_timeout <= 0:
        console.print("[bold red]error:[/] --drain-timeout must be positive")
        raise typer.Exit(2)
    _serve_start(
        directory.resolve(),
        host,
        port,
        log_level=log_level,
        workers=workers,
        drain_timeout=drain_timeout,
        pid_file=pid_file.resolve() if pid_file else None,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
    )


@app.command()
def reload(
    port: Port = 3000,
    directory: Dir = Path("."),
    pid_file: PidFile = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the new workers to serve.")
    ] = 120.0,
) -> None:
    """Reload a running `surge start` with no downtime: new workers load the project, become
    ready and take over; the old ones drain (WebSockets closed with 1012) and exit."""
    from surge.cli.master import default_pid_file, read_state

    path = pid_file.resolve() if pid_file else default_pid_file(directory.resolve(), port)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        _error(f"no pid file at {path}: is `surge start` running on port {port} there?")
        raise typer.Exit(1) from exc
    before = (read_state(path) or {}).get("reloads", 0)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        _error(f"no process {pid} (from {path}): `surge start` is not running")
        raise typer.Exit(1) from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(path) or {}
        if state.get("reloads", 0) > before and state.get("last_reload"):
            outcome = state["last_reload"]
            if outcome.get("result") == "ok":
                console.print(f"reloaded: {escape(str(outcome.get('message')))}")
                return
            _error(str(outcome.get("message")))
            raise typer.Exit(1)
        time.sleep(0.05)
    _error(f"no reload outcome after {timeout:.0f} s (see the server's log)")
    raise typer.Exit(1)


@app.command("generate-types")
def generate_types_command(
    directory: Dir = Path("."),
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "types.d.ts"
    ),
) -> None:
    """Write TypeScript types for the front end from the stream, step and auth schemas."""
    from surge.errors import ConfigError
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
    from surge.errors import ConfigError
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
