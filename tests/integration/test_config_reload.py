"""`surge dev` reloads surge.config.py: a changed `authenticate` applies to the next upgrade;
settings a running process cannot change are reported, not silently ignored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from surge import create_app
from surge.streams.stores.memory import MemoryStreamAdapter
from surge.testing import live_server

from .streamclient import wait_until

STREAM = """
from surge import StreamConfig
config = StreamConfig(name="todo", schema={"type": "object", "properties": {}})
"""

CONFIG = """
from surge import Config, Limits, StreamAuth

def authenticate(request):
    if "authToken={token}" not in request.url:
        raise PermissionError("no")
    return {{"user": "{token}"}}

config = Config(stream_auth=StreamAuth(authenticate=authenticate), limits=Limits({limits}))
"""


async def accepted(url: str) -> bool:
    try:
        async with connect(url):
            return True
    except InvalidStatus:
        return False


async def test_a_changed_authenticate_applies_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "todo_stream.py").write_text(STREAM)
    config = tmp_path / "surge.config.py"
    config.write_text(CONFIG.format(token="old", limits=""))
    app = create_app(tmp_path, reload=True, adapter=MemoryStreamAdapter())
    caplog.set_level(logging.INFO, logger="surge.server.app")
    async with live_server(app) as srv:
        assert await accepted(f"{srv.ws_url}?authToken=old")
        assert not await accepted(f"{srv.ws_url}?authToken=new")

        config.write_text(CONFIG.format(token="new", limits="max_subscriptions=3"))
        await wait_until(lambda: "reloaded surge.config.py" in caplog.text, within=20)
        assert await accepted(f"{srv.ws_url}?authToken=new")
        assert not await accepted(f"{srv.ws_url}?authToken=old")
        assert "changed limits: restart surge dev to apply" in caplog.text
        assert srv.app.runtime.config.limits.max_subscriptions == 256  # kept until a restart

        config.write_text("this is not python(")
        await wait_until(lambda: "keeping the previous one" in caplog.text, within=20)
        assert await accepted(f"{srv.ws_url}?authToken=new")
