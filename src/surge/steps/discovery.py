"""Discovery: load every ``*_stream.py`` and ``*_step.py`` under ``steps/`` into a ``Registry``.

Step files are imported as modules of the package ``steps`` (the project root goes on
``sys.path``), so they can import each other the Python way (``from steps.todo_stream import
Todo``). Files whose names are not identifiers (``todo.stream.py``) are loaded by path under a
sanitised name. Every problem is a ``ConfigError`` naming the file (and line, when there is one).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

import pydantic

from surge.errors import ConfigError, SurgeError
from surge.steps.config import (
    STEP_TYPES,
    FieldError,
    StreamConfig,
    normalize_api_config,
    normalize_cron_config,
    normalize_event_config,
    normalize_stream_config,
    step_type,
)
from surge.steps.registry import ApiRoute, CronStep, EventStep, Handler, Registry
from surge.steps.strict import did_you_mean

__all__ = [
    "STEP_SUFFIXES",
    "STREAM_SUFFIXES",
    "describe_exception",
    "discover",
    "find_step_files",
    "load_module",
]

STREAM_SUFFIXES = ("_stream.py", ".stream.py")
STEP_SUFFIXES = ("_step.py", ".step.py")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SKIP_DIRS = {"__pycache__", "node_modules", ".venv", "venv"}


def find_step_files(steps_dir: Path) -> list[Path]:
    """Every stream and step file under ``steps_dir``, in a stable order."""
    found = []
    for path in sorted(steps_dir.rglob("*.py")):
        if any(part in _SKIP_DIRS or part.startswith(".") for part in path.parts):
            continue
        if path.name.endswith(STREAM_SUFFIXES + STEP_SUFFIXES):
            found.append(path)
    return found


def _install_steps_package(steps_dir: Path) -> None:
    """Make ``steps`` (and only this project's) the package of the files in ``steps_dir``.

    Previously loaded step modules are dropped first: reload and several projects in one
    process (tests) then always get fresh modules from the right directory.
    """
    for name in [n for n in sys.modules if n == "steps" or n.startswith("steps.")]:
        del sys.modules[name]
    init = steps_dir / "__init__.py"
    spec: ModuleSpec | None
    if init.exists():
        spec = importlib.util.spec_from_file_location(
            "steps", init, submodule_search_locations=[str(steps_dir)]
        )
    else:
        spec = ModuleSpec("steps", None, is_package=True)
        spec.submodule_search_locations = [str(steps_dir)]
    if spec is None:
        raise ConfigError("cannot be loaded as a Python package", path=steps_dir)
    package = importlib.util.module_from_spec(spec)
    sys.modules["steps"] = package
    if spec.loader is not None and init.exists():
        try:
            spec.loader.exec_module(package)
        except Exception as exc:
            raise ConfigError(f"import failed: {type(exc).__name__}: {exc}", path=init) from exc


def _error_location(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f"line {exc.lineno}: "
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path.resolve():
            return f"line {frame.lineno}: "
    return ""


def load_module(path: Path, root: Path) -> ModuleType:
    """Import one step file; raises ConfigError naming the file on any failure."""
    relative = path.relative_to(root).with_suffix("")
    parts = relative.parts
    try:
        if all(_IDENT.match(p) for p in parts):
            return importlib.import_module(".".join(parts))
        name = "steps._" + re.sub(r"\W", "_", "_".join(parts[1:]))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConfigError("cannot be loaded as a Python module", path=path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    except SurgeError as exc:
        if isinstance(exc, ConfigError) and exc.path is not None:
            raise
        where = _error_location(exc, path)
        if isinstance(exc, FieldError):  # a typed config: point at the keyword, not the call
            line = config_line(path, exc.field)
            where = f"line {line}: " if line is not None else where
        message = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise ConfigError(f"{where}{message}", path=path) from exc
    except SyntaxError as exc:
        raise ConfigError(
            f"{_error_location(exc, path)}syntax error: {exc.msg}", path=path
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"{_error_location(exc, path)}import failed: {describe_exception(exc)}", path=path
        ) from exc


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` on one line (pydantic's ValidationError spans several)."""
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        return f"ValidationError: invalid {exc.title}: {problems}"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def config_line(path: Path, key: str | None = None) -> int | None:
    """The line of ``config = ...`` in ``path`` (of its ``key`` entry when it is a literal dict
    or a call with that keyword), or None when the file does not say it plainly."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not (isinstance(target, ast.Name) and target.id == "config") or value is None:
            continue
        if key is not None and isinstance(value, ast.Dict):
            for k in value.keys:
                if isinstance(k, ast.Constant) and k.value == key:
                    return k.lineno
        if key is not None and isinstance(value, ast.Call):
            snake = re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
            for keyword in value.keywords:
                if keyword.arg in (key, snake):
                    return keyword.value.lineno
        return node.lineno
    return None


def _signature_problem(handler: Handler, params: int, kind: str, name: str) -> str | None:
    """Why ``handler`` cannot be called as an ``async def`` with ``params`` positional args."""
    if not inspect.iscoroutinefunction(handler):
        return f"{kind} step {name!r}: `handler` must be `async def`"
    try:
        inspect.signature(handler).bind(*range(params))
    except TypeError:
        expected = "handler(input, ctx)" if params == 2 and kind == "event" else None
        expected = expected or ("handler(req, ctx)" if params == 2 else "handler(ctx)")
        return (
            f"{kind} step {name!r}: `handler` must take {params} argument(s): async def {expected}"
        )
    except ValueError:
        return None  # no introspectable signature (a C callable): trust it
    return None


def _handler(module: ModuleType, kind: str, name: str, params: int, path: Path) -> Handler:
    handler = getattr(module, "handler", None)
    if handler is None or not callable(handler):
        functions = [n for n, v in vars(module).items() if inspect.isfunction(v)]
        hint = did_you_mean("handler", functions)
        raise ConfigError(f"{kind} step {name!r} has no `handler` function{hint}", path=path)
    problem = _signature_problem(handler, params, kind, name)
    if problem is not None:
        code = getattr(handler, "__code__", None)
        line = f"line {code.co_firstlineno}: " if code is not None else ""
        raise ConfigError(f"{line}{problem}", path=path)
    handler_: Handler = handler
    return handler_


def discover(project_dir: Path | str) -> Registry:
    """Load the project's ``steps/`` directory into a Registry (empty if there is none)."""
    root = Path(project_dir).resolve()
    steps_dir = root / "steps"
    if not steps_dir.is_dir():
        return Registry()
    if str(root) not in sys.path:
        # So step files can import the project's other modules (``from lib.db import ...``).
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    _install_steps_package(steps_dir)
    streams: list[tuple[StreamConfig, Path | None]] = []
    routes: list[ApiRoute] = []
    events: list[EventStep] = []
    crons: list[CronStep] = []
    for path in find_step_files(steps_dir):
        module = load_module(path, root)
        if not hasattr(module, "config"):
            raise ConfigError("has no `config` (a stream or step file must export one)", path=path)
        raw = module.config
        try:
            if path.name.endswith(STREAM_SUFFIXES):
                streams.append((normalize_stream_config(raw), path))
                continue
            kind = step_type(raw)
            if kind == "api":
                api = normalize_api_config(raw)
                routes.append(ApiRoute(api, _handler(module, "API", api.name, 2, path), path))
            elif kind == "event":
                event = normalize_event_config(raw)
                handler = _handler(module, "event", event.name, 2, path)
                events.append(EventStep(event, handler, path))
            elif kind == "cron":
                cron = normalize_cron_config(raw)
                crons.append(CronStep(cron, _handler(module, "cron", cron.name, 1, path), path))
            else:
                known = ", ".join(repr(t) for t in STEP_TYPES)
                hint = did_you_mean(kind, STEP_TYPES) if isinstance(kind, str) else ""
                raise FieldError(
                    f"unknown step type {kind!r}{hint} (expected one of {known})", field="type"
                )
        except ConfigError as exc:
            if exc.path is None:
                line = config_line(path, getattr(exc, "field", None))
                where = f"line {line}: " if line is not None else ""
                raise ConfigError(f"{where}{exc.message}", path=path) from exc
            raise
    return Registry.build(streams, routes, events=events, crons=crons)
