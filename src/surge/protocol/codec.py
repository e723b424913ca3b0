"""The codec: the only place wire JSON is parsed, and where server frames are encoded.

Decoding turns one client text frame into a ``Join``/``Leave``/``Page``, ``None`` for an unknown
``type`` (ignored, as the protocol says), or raises ``ProtocolError`` with a precise message.

Encoding produces a ``Frame``: the envelope as text plus its ``timestamp``. A frame is encoded once
per change and the same object goes to every subscribed connection; a connection whose last sent
timestamp is not below the frame's asks for ``frame.restamped(ts)`` (rare: only around a sync).

Deltas (protocol.md section 4): ``encode_patch`` makes a ``PatchFrame``, the change's ops for
subscriptions that asked for them; its ``full`` is the same change's whole-item ``update`` frame
(same timestamp), encoded at most once and only when asked for, so one change costs at most one
encode of each form whatever the number of connections, and whoever holds a patch frame (the
outbox collapsing frames, say) can always get the whole item instead. ``PatchFrame.compact`` is
the compact patch form for subscriptions that asked for it (``"compact": true``): the address,
offset and epoch as one array, the ops as arrays, about half the bytes of a short patch.

Offsets and epochs (docs/protocol.md sections 2-3): given an ``epoch``, change, patch, event and
sync frames carry ``"offset"`` and ``"epoch"`` in the envelope (events only when they have a
``seq``); ``encode_resume`` is the answer to a join whose ``since`` could be honoured, and
``unrecovered`` marks a sync that answers one that could not (``"recovered": false``).
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import orjson

from surge.errors import ProtocolError
from surge.protocol.codes import (
    ACCESS_DENIED,
    INVALID_MESSAGE,
    STORE_UNAVAILABLE,
    SYNC_TOO_LARGE,
    TOO_MANY_SUBSCRIPTIONS,
)
from surge.protocol.ids import id_problem
from surge.protocol.messages import Join, Leave, Page, Since, SubscriptionRequest

__all__ = [
    "ACCESS_DENIED",
    "INVALID_MESSAGE",
    "MAX_CURSOR_CHARS",
    "MAX_PAGE_LIMIT",
    "STORE_UNAVAILABLE",
    "SYNC_TOO_LARGE",
    "TOO_MANY_SUBSCRIPTIONS",
    "ChangeMessage",
    "EventMessage",
    "Frame",
    "PatchFrame",
    "PatchMessage",
    "decode_client_message",
    "encode_change",
    "encode_error",
    "encode_event",
    "encode_group_sync",
    "encode_item_sync",
    "encode_page",
    "encode_patch",
    "encode_resume",
    "encode_resume_batch",
    "replay_change",
    "replay_event",
    "unrecovered",
]

MAX_EPOCH_LENGTH = 64
"""The longest ``since.epoch`` a join may carry (the stores' are 8-12 characters)."""

MAX_PAGE_LIMIT = 1000
"""The largest ``limit`` a ``page`` request may ask for."""
MAX_CURSOR_CHARS = 64
"""The longest ``before`` cursor a ``page`` request may carry (the stores' are far shorter)."""


_TS_PREFIX = '{"timestamp":'


class Frame:
    """An encoded server message: ``text`` starts with ``{"timestamp":<ts>,``.

    ``wire`` is the complete WebSocket text frame (header and UTF-8 payload, unmasked as server
    frames are), built once on first use and then written as is to every connection.

    ``change`` is ``(stream, group, id, kind)`` for an item change (``create``/``update``/
    ``delete``), None for every other frame: what the latest-value slow-consumer policy reads to
    collapse one item's queued changes (``server/outbox.py``).
    """

    __slots__ = ("_size", "_wire", "change", "text", "ts")

    count = 1
    """Messages this frame carries (a ``protocol.blocks.FrameBlock`` carries several)."""

    def __init__(self, ts: int, text: str, change: tuple[str, str, str, str] | None = None) -> None:
        self.ts = ts
        self.text = text
        self.change = change
        self._wire: bytes | None = None
        self._size = -1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (self.ts, self.text) == (other.ts, other.text)

    def __hash__(self) -> int:
        return hash((self.ts, self.text))

    def __repr__(self) -> str:
        return f"Frame(ts={self.ts}, text={self.text!r})"

    @property
    def size(self) -> int:
        """Bytes this frame takes on the wire (what the outbox's byte cap counts)."""
        size = self._size
        return size if size >= 0 else len(self.wire)

    @property
    def wire(self) -> bytes:
        """The RFC 6455 text frame carrying ``text`` (FIN set, no mask, no extension)."""
        wire = self._wire
        if wire is None:
            payload = self.text.encode()
            size = len(payload)
            if size < 126:
                header = bytes((0x81, size))
            elif size < 65536:
                header = struct.pack("!BBH", 0x81, 126, size)
            else:
                header = struct.pack("!BBQ", 0x81, 127, size)
            wire = self._wire = header + payload
            self._size = len(wire)
        return wire

    def restamped(self, ts: int) -> Frame:
        """The same message with another timestamp (the rest of the text is reused as is)."""
        rest = self.text[len(_TS_PREFIX) + len(str(self.ts)) :]
        return Frame(ts, f"{_TS_PREFIX}{ts}{rest}", self.change)


def _text(ts: int, body: dict[str, Any]) -> str:
    # The timestamp goes first so that restamping is a prefix swap, not a re-encode.
    return f"{_TS_PREFIX}{ts},{orjson.dumps(body).decode()[1:]}"


def _frame(ts: int, body: dict[str, Any]) -> Frame:
    return Frame(ts, _text(ts, body))


class ChangeMessage(Protocol):
    """What ``encode_change`` reads of a change (``surge.streams.feed.Change`` has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def item(self) -> dict[str, Any]: ...
    @property
    def seq(self) -> int: ...


class EventMessage(Protocol):
    """What ``encode_event`` reads of an ephemeral event (``surge.streams.feed.EphemeralEvent``)."""

    @property
    def stream(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def id(self) -> str | None: ...
    @property
    def event(self) -> dict[str, Any]: ...
    @property
    def seq(self) -> int: ...


class PatchMessage(ChangeMessage, Protocol):
    """What ``encode_patch`` reads: a change with the ops that made it (and its ``seq``)."""

    @property
    def ops(self) -> list[dict[str, Any]] | None: ...


def _change_body(change: ChangeMessage, event: dict[str, Any], epoch: str | None) -> dict[str, Any]:
    """The envelope (without the timestamp) of a change of item ``change.id``."""
    body: dict[str, Any] = {"streamName": change.stream, "groupId": change.group, "id": change.id}
    if epoch is not None:
        body["offset"] = change.seq
        body["epoch"] = epoch
    body["event"] = event
    return body


def encode_change(change: ChangeMessage, ts: int, epoch: str | None = None) -> Frame:
    """Encode a create/update/delete for item ``change.id`` (with its offset, given ``epoch``)."""
    frame = _frame(ts, _change_body(change, {"type": change.kind, "data": change.item}, epoch))
    frame.change = (change.stream, change.group, change.id, change.kind)
    return frame


class PatchFrame(Frame):
    """A ``patch`` frame, which also gives the whole-item ``update`` frame of its change and its
    compact form (protocol.md section 4).

    Its ``change`` is ``(stream, group, id, "patch")``; ``source`` is the change itself. ``full``
    and ``compact`` are encoded on first use and shared by the frame's forms, so a change costs
    at most one encode of each form.
    """

    __slots__ = ("_epoch", "_forms", "_source")

    def __init__(
        self,
        ts: int,
        text: str,
        source: PatchMessage,
        epoch: str | None = None,
        forms: _PatchForms | None = None,
    ) -> None:
        super().__init__(ts, text, (source.stream, source.group, source.id, "patch"))
        self._source = source
        self._epoch = epoch
        self._forms = _PatchForms() if forms is None else forms

    @property
    def source(self) -> PatchMessage:
        """The change this frame patches (its ``item`` is the whole new item)."""
        return self._source

    @property
    def full(self) -> Frame:
        """The change as a whole-item ``update`` frame with this frame's timestamp (encoded on
        first use, then shared)."""
        forms = self._forms
        full = forms.full
        if full is None:
            full = forms.full = encode_change(self._source, self.ts, self._epoch)
        return full

    @property
    def compact(self) -> PatchFrame:
        """The same patch in the compact form, ``{"timestamp":..,"patch":[stream, group, id,
        offset, epoch, ops]}`` with each op an array (encoded on first use, then shared)."""
        forms = self._forms
        compact = forms.compact
        if compact is None:
            source, epoch = self._source, self._epoch
            ops = source.ops or []
            body = [
                source.stream,
                source.group,
                source.id,
                None if epoch is None else source.seq,
                epoch,
                [_compact_op(op) for op in ops],
            ]
            text = f'{_TS_PREFIX}{self.ts},"patch":{orjson.dumps(body).decode()}}}'
            compact = forms.compact = PatchFrame(self.ts, text, source, epoch, forms)
        return compact

    def restamped(self, ts: int) -> PatchFrame:
        """The same patch with another timestamp (its other forms follow)."""
        rest = self.text[len(_TS_PREFIX) + len(str(self.ts)) :]
        forms = self._forms
        again = _PatchForms(
            None if forms.full is None else forms.full.restamped(ts),
            None,
        )
        frame = PatchFrame(ts, f"{_TS_PREFIX}{ts}{rest}", self._source, self._epoch, again)
        if forms.compact is self:
            again.compact = frame
        return frame


class _PatchForms:
    """The whole-item and compact frames of one patch, shared by its ``PatchFrame`` forms."""

    __slots__ = ("compact", "full")

    def __init__(self, full: Frame | None = None, compact: PatchFrame | None = None) -> None:
        self.full = full
        self.compact = compact


def _compact_op(op: dict[str, Any]) -> list[Any]:
    """An op as the compact patch form's array: ``[type, path, value]``, ``[type, path, by]``
    (increment, decrement) or ``[type, path]`` (remove)."""
    kind = op["type"]
    if kind in ("increment", "decrement"):
        return [kind, op["path"], op.get("by", 1)]
    if kind == "remove":
        return [kind, op["path"]]
    return [kind, op["path"], op["value"]]


def encode_patch(change: PatchMessage, ts: int, epoch: str | None = None) -> PatchFrame:
    """Encode an ``update`` made by ``update(ops)`` as its ops (``change.ops`` must be set)."""
    event = {"type": "patch", "data": {"ops": change.ops}}
    return PatchFrame(ts, _text(ts, _change_body(change, event, epoch)), change, epoch)


def encode_event(event: EventMessage, ts: int, epoch: str | None = None) -> Frame:
    """Encode an ephemeral event; ``id`` is present only when the channel has one; the offset
    only given ``epoch`` and a ``seq`` (events of other extensions, such as presence, have none)."""
    body: dict[str, Any] = {"streamName": event.stream, "groupId": event.group}
    if event.id is not None:
        body["id"] = event.id
    if epoch is not None and event.seq > 0:
        body["offset"] = event.seq
        body["epoch"] = epoch
    body["event"] = {"type": "event", "event": event.event}
    return _frame(ts, body)


def encode_group_sync(
    stream: str,
    group: str,
    items: list[dict[str, Any]],
    ts: int,
    *,
    more: str | None = None,
    offset: int | None = None,
    epoch: str | None = None,
) -> Frame:
    """Encode the answer to a group join (``more``: the cursor of older items, windowed; at
    ``offset`` of ``epoch``, when given)."""
    body: dict[str, Any] = {"streamName": stream, "groupId": group}
    if more is not None:
        body["more"] = more
    if offset is not None and epoch is not None:
        body["offset"] = offset
        body["epoch"] = epoch
    body["event"] = {"type": "sync", "data": items}
    return _frame(ts, body)


def encode_page(
    stream: str, group: str, items: list[dict[str, Any]], ts: int, *, more: str | None = None
) -> Frame:
    """Encode the answer to a ``page`` request: older items, in creation order."""
    body: dict[str, Any] = {"streamName": stream, "groupId": group}
    if more is not None:
        body["more"] = more
    body["event"] = {"type": "page", "data": items}
    return _frame(ts, body)


def encode_item_sync(
    stream: str,
    group: str,
    id: str,
    item: dict[str, Any] | None,
    ts: int,
    *,
    offset: int | None = None,
    epoch: str | None = None,
) -> Frame:
    """Encode the answer to an item join (``data`` is null when the item does not exist)."""
    body: dict[str, Any] = {"streamName": stream, "groupId": group, "id": id}
    if offset is not None and epoch is not None:
        body["offset"] = offset
        body["epoch"] = epoch
    body["event"] = {"type": "sync", "data": item}
    return _frame(ts, body)


def encode_resume(
    request: SubscriptionRequest, since: int, missed: int, offset: int, epoch: str, ts: int
) -> Frame:
    """Encode the answer to a join resumed from ``since``: ``missed`` messages follow, which
    bring the client to ``offset`` (docs/protocol.md section 3)."""
    body: dict[str, Any] = {"streamName": request.stream, "groupId": request.group}
    if request.id is not None:
        body["id"] = request.id
    body["offset"] = offset
    body["epoch"] = epoch
    body["event"] = {"type": "resume", "data": {"since": since, "missed": missed}}
    return _frame(ts, body)


def replay_change(change: PatchMessage, deltas: bool) -> list[Any]:
    """A missed change as an entry of a batched ``resume`` (protocol.md section 3):
    ``[offset, "patch", id, ops]`` for an ``update(ops)`` to a delta subscription (each op in the
    compact form), else ``[offset, kind, id, item]`` (create/update/delete, the whole item)."""
    if deltas and change.ops is not None and change.kind == "update":
        return [change.seq, "patch", change.id, [_compact_op(op) for op in change.ops]]
    return [change.seq, change.kind, change.id, change.item]


def replay_event(event: EventMessage) -> list[Any]:
    """A missed ``send`` as an entry of a batched ``resume``: ``[offset, "event", id,
    {"type":..,"data":..}]`` (id null for a group-wide event)."""
    return [event.seq, "event", event.id, event.event]


def encode_resume_batch(
    request: SubscriptionRequest,
    since: int,
    entries: list[list[Any]],
    offset: int,
    epoch: str,
    ts: int,
) -> Frame:
    """Encode the answer to a join resumed from ``since`` for a subscription that asked for the
    compact form: the ``resume`` frame with the missed messages inside it, ``"replay":
    [[offset, kind, id, payload], ...]`` (``replay_change``, ``replay_event``), the address,
    epoch and timestamp stated once (docs/protocol.md section 3)."""
    body: dict[str, Any] = {"streamName": request.stream, "groupId": request.group}
    if request.id is not None:
        body["id"] = request.id
    body["offset"] = offset
    body["epoch"] = epoch
    body["event"] = {
        "type": "resume",
        "data": {"since": since, "missed": len(entries), "replay": entries},
    }
    return _frame(ts, body)


def unrecovered(sync: Frame, ts: int) -> Frame:
    """``sync`` stamped ``ts`` with ``"recovered": false``: it answers a join whose ``since``
    could not be honoured (the rest of the text is reused as is)."""
    rest = sync.text[len(_TS_PREFIX) + len(str(sync.ts)) :]
    return Frame(ts, f'{_TS_PREFIX}{ts},"recovered":false{rest}')


def encode_error(
    code: str,
    message: str,
    ts: int,
    *,
    stream: str | None = None,
    group: str | None = None,
    id: str | None = None,
) -> Frame:
    """Encode an error event, addressed like the join it answers when that is known."""
    body: dict[str, Any] = {}
    if stream is not None:
        body["streamName"] = stream
    if group is not None:
        body["groupId"] = group
    if id is not None:
        body["id"] = id
    body["event"] = {
        "type": "event",
        "event": {"type": "error", "data": {"code": code, "message": message}},
    }
    return _frame(ts, body)


def decode_client_message(raw: str | bytes) -> Join | Leave | Page | None:
    """Parse one client frame.

    Returns:
        ``Join``/``Leave``/``Page``, or None for a well-formed message of an unknown ``type``.

    Raises:
        ProtocolError: the frame is not JSON, not an object, or lacks/mistypes a required field.
    """
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"frame must be a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError('frame has no string "type"')
    if kind not in ("join", "leave", "page"):
        return None
    data = message.get("data")
    if not isinstance(data, dict):
        raise ProtocolError(f'{kind}: "data" must be an object')
    if kind == "page":
        return _page(data)
    request = _subscription_request(kind, data)
    return Join(request) if kind == "join" else Leave(request)


def _page(data: dict[str, Any]) -> Page:
    for wire_name in ("streamName", "groupId", "subscriptionId"):
        problem = id_problem(data.get(wire_name), wire_name)
        if problem is not None:
            raise ProtocolError(f"page: {problem}")
    before = data.get("before")
    if before is not None and (
        not isinstance(before, str) or not 0 < len(before) <= MAX_CURSOR_CHARS
    ):
        raise ProtocolError(
            f'page: "before" must be a cursor (a string of 1 to {MAX_CURSOR_CHARS} characters)'
        )
    limit = data.get("limit")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE_LIMIT
    ):
        raise ProtocolError(f'page: "limit" must be an integer from 1 to {MAX_PAGE_LIMIT}')
    return Page(data["streamName"], data["groupId"], data["subscriptionId"], before, limit)


def _subscription_request(kind: str, data: dict[str, Any]) -> SubscriptionRequest:
    fields = {"streamName": "streamName", "groupId": "groupId", "subscriptionId": "subscriptionId"}
    for wire_name in fields:
        problem = id_problem(data.get(wire_name), wire_name)
        if problem is not None:
            raise ProtocolError(f"{kind}: {problem}")
    item_id = data.get("id")
    if item_id is not None:
        problem = id_problem(item_id, "id")
        if problem is not None:
            raise ProtocolError(f"{kind}: {problem}")
    deltas = data.get("deltas")
    if deltas is None:
        deltas = False
    elif not isinstance(deltas, bool):
        raise ProtocolError(f'{kind}: "deltas" must be true or false')
    compact = data.get("compact")
    if compact is None:
        compact = False
    elif not isinstance(compact, bool):
        raise ProtocolError(f'{kind}: "compact" must be true or false')
    return SubscriptionRequest(
        stream=data["streamName"],
        group=data["groupId"],
        id=item_id,
        subscription_id=data["subscriptionId"],
        deltas=deltas,
        compact=compact and deltas,
        since=_since(kind, data.get("since")) if kind == "join" else None,
    )


def _since(kind: str, raw: object) -> Since | None:
    """A join's ``since``: absent or null -> None; otherwise it must be well formed."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolError(f'{kind}: "since" must be an object with "offset" and "epoch"')
    offset, epoch = raw.get("offset"), raw.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**63:
        raise ProtocolError(f'{kind}: "since.offset" must be an integer >= 0')
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        raise ProtocolError(
            f'{kind}: "since.epoch" must be a non-empty string of at most {MAX_EPOCH_LENGTH}'
        )
    return Since(offset, epoch)
