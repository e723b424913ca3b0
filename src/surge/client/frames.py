"""Sans-I/O wire format of the client side: join/leave frames out, server envelopes in.

The server's codec (``surge.protocol.codec``) parses what clients send; this module is its mirror
for what servers send. Decoding never raises on a frame that is merely unusual: unknown event
types are kept (``kind``), missing optional fields are None. A frame that is not an envelope at
all (not JSON, not an object, no integer ``timestamp``) raises ``ProtocolError``.

Deltas and windowed groups (protocol.md sections 4 and 5): a join carries ``"deltas": true`` and
``"compact": true`` when its request asks for deltas, ``patch`` frames (verbose or compact: both
decode to the same ``ServerFrame``) keep their ops in ``data``, a ``sync`` or ``page``
frame's ``more`` cursor is ``ServerFrame.more``, and ``encode_page`` asks for older items.

Resume (docs/protocol.md sections 2-3): envelopes' ``offset``/``epoch`` and a sync's
``"recovered": false`` are decoded (None when absent); ``encode_join`` adds ``since``. A
``resume`` frame's ``data`` is ``{"since": N, "missed": K}``; one answering a join that asked for
the compact form may carry the missed messages themselves (``"replay": [[offset, kind, id,
payload], ...]``), decoded to ``ServerFrame.replay``: each the frame it stands for (the resume's
address, epoch and timestamp, ``replayed`` set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from surge.errors import ProtocolError
from surge.protocol.messages import SubscriptionRequest

__all__ = ["ServerFrame", "decode_server_frame", "encode_join", "encode_leave", "encode_page"]


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """One decoded server envelope.

    ``kind`` is the event type: ``sync``, ``create``, ``update``, ``delete``, ``patch``
    (``data``: ``{"ops": [...]}``), ``page`` or ``event`` (an ephemeral event, whose own type and
    data are ``event_type``/``event_data``). ``more``: the cursor of older items on a windowed
    ``sync`` or a ``page``.
    """

    timestamp: int
    stream: str | None
    group: str | None
    id: str | None
    kind: str
    data: Any = None
    event_type: str | None = None
    event_data: Any = None
    offset: int | None = None
    epoch: str | None = None
    more: str | None = None
    recovered: bool | None = None
    replay: tuple[ServerFrame, ...] = ()
    """On a batched ``resume``: the missed messages, in order, as the frames they stand for."""
    replayed: bool = False
    """A frame of a batched ``resume``: it carries the resume's timestamp (the client's
    timestamp rule takes it as newer than an equal one, see ``client/state.py``)."""

    @property
    def error(self) -> tuple[str, str] | None:
        """``(code, message)`` when this is the protocol's error event, else None."""
        if self.kind != "event" or self.event_type != "error":
            return None
        data = self.event_data
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            return None
        message = data.get("message")
        return data["code"], message if isinstance(message, str) else ""


def _optional_str(envelope: dict[str, Any], key: str) -> str | None:
    value = envelope.get(key)
    return value if isinstance(value, str) else None


def decode_server_frame(text: str | bytes) -> ServerFrame:
    """Parse one server text frame.

    Raises:
        ProtocolError: not a JSON object with an integer ``timestamp`` and an ``event`` object.
    """
    try:
        envelope = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"server frame is not valid JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise ProtocolError("server frame is not a JSON object")
    ts = envelope.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise ProtocolError('server frame has no integer "timestamp"')
    patch = envelope.get("patch")
    if isinstance(patch, list) and "event" not in envelope:
        return _compact_patch(ts, patch)
    event = envelope.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ProtocolError('server frame has no "event" object with a string "type"')
    offset = envelope.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int):
        offset = None
    kind: str = event["type"]
    event_type = None
    event_data = None
    if kind == "event":
        inner = event.get("event")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            event_type = inner["type"]
            event_data = inner.get("data")
    replay: tuple[ServerFrame, ...] = ()
    data = event.get("data")
    if kind == "resume" and isinstance(data, dict) and isinstance(data.get("replay"), list):
        replay = _replay(
            ts,
            _optional_str(envelope, "streamName"),
            _optional_str(envelope, "groupId"),
            _optional_str(envelope, "epoch"),
            data["replay"],
        )
    return ServerFrame(
        timestamp=ts,
        stream=_optional_str(envelope, "streamName"),
        group=_optional_str(envelope, "groupId"),
        id=_optional_str(envelope, "id"),
        kind=kind,
        data=event.get("data"),
        event_type=event_type,
        event_data=event_data,
        offset=offset,
        epoch=_optional_str(envelope, "epoch"),
        more=_optional_str(envelope, "more"),
        recovered=recovered if isinstance(recovered := envelope.get("recovered"), bool) else None,
        replay=replay,
    )


def _replay(
    ts: int, stream: str | None, group: str | None, epoch: str | None, entries: list[Any]
) -> tuple[ServerFrame, ...]:
    """The entries of a batched ``resume`` (``[offset, kind, id, payload]``, protocol.md
    section 3) as the frames they stand for; a malformed entry is skipped."""
    frames = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 4:
            continue
        offset, kind, id, payload = entry
        if isinstance(offset, bool) or not isinstance(offset, int) or not isinstance(kind, str):
            continue
        item_id = id if isinstance(id, str) else None
        if kind == "event":
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                continue
            frames.append(
                ServerFrame(
                    ts,
                    stream,
                    group,
                    item_id,
                    "event",
                    None,
                    payload["type"],
                    payload.get("data"),
                    offset,
                    epoch,
                    replayed=True,
                )
            )
            continue
        data = payload
        if kind == "patch":
            ops = _ops(payload)
            data = None if ops is None else {"ops": ops}
        frames.append(
            ServerFrame(
                ts, stream, group, item_id, kind, data, offset=offset, epoch=epoch, replayed=True
            )
        )
    return tuple(frames)


def _ops(raw_ops: Any) -> list[dict[str, Any]] | None:
    """Compact ops (``[type, path, value|by]``, ``[type, path]``) as verbose ones; None when
    malformed."""
    if not isinstance(raw_ops, list):
        return None
    ops = []
    for raw in raw_ops:
        if not isinstance(raw, list) or not 2 <= len(raw) <= 3 or not isinstance(raw[0], str):
            return None
        op: dict[str, Any] = {"type": raw[0], "path": raw[1]}
        if len(raw) == 3:
            op["by" if raw[0] in ("increment", "decrement") else "value"] = raw[2]
        ops.append(op)
    return ops


def _compact_patch(ts: int, body: list[Any]) -> ServerFrame:
    """The compact patch form (``{"timestamp":..,"patch":[stream, group, id, offset, epoch,
    ops]}``, protocol.md section 4) as the ``patch`` frame it stands for. Malformed ops give
    ``data=None`` (the state ignores such a patch, as a malformed verbose one)."""
    stream, group, id, offset, epoch, raw_ops = (list(body) + [None] * 6)[:6]
    ops = _ops(raw_ops)
    return ServerFrame(
        timestamp=ts,
        stream=stream if isinstance(stream, str) else None,
        group=group if isinstance(group, str) else None,
        id=id if isinstance(id, str) else None,
        kind="patch",
        data=None if ops is None else {"ops": ops},
        offset=offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
        epoch=epoch if isinstance(epoch, str) else None,
    )


def _data(request: SubscriptionRequest) -> dict[str, Any]:
    data: dict[str, Any] = {"streamName": request.stream, "groupId": request.group}
    if request.id is not None:
        data["id"] = request.id
    data["subscriptionId"] = request.subscription_id
    if request.deltas:
        data["deltas"] = True
        data["compact"] = True  # this client reads the compact patch form too
    return data


def encode_join(request: SubscriptionRequest, since: tuple[int, str] | None = None) -> str:
    """The join frame for ``request``; ``since`` (offset, epoch): resume from that position."""
    data = _data(request)
    if since is not None:
        data["since"] = {"offset": since[0], "epoch": since[1]}
    return orjson.dumps({"type": "join", "data": data}).decode()


def encode_page(request: SubscriptionRequest, before: str | None, limit: int | None) -> str:
    """The ``page`` request for the group subscription ``request``: items older than the
    cursor ``before``."""
    data: dict[str, Any] = {
        "streamName": request.stream,
        "groupId": request.group,
        "subscriptionId": request.subscription_id,
    }
    if before is not None:
        data["before"] = before
    if limit is not None:
        data["limit"] = limit
    return orjson.dumps({"type": "page", "data": data}).decode()


def encode_leave(request: SubscriptionRequest) -> str:
    """The leave frame: the same data object as the join."""
    return orjson.dumps({"type": "leave", "data": _data(request)}).decode()
