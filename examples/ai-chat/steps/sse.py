"""Server-sent events, Sans-I/O: bytes in (in chunks of any size), complete events out.

The parser follows the WHATWG event-stream rules: lines end with ``\\r\\n``, ``\\n`` or ``\\r``
(a ``\\r\\n`` split across two chunks is still one line break); a blank line dispatches the event;
``:`` starts a comment (keep-alives); ``data`` lines of one event are joined with ``\\n``; one
space after the colon is dropped. UTF-8 is decoded incrementally, so a multi-byte character split
across chunks arrives whole. It knows nothing of sockets: ``chat_model`` feeds it what httpx reads.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``event`` type (``"message"`` by default), data and id."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Incremental event-stream parser: ``feed(chunk)`` and, at the end, ``close()``."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._first = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk``; returns the events it completed (often none, sometimes several)."""
        return self._parse(self._decoder.decode(chunk), final=False)

    def close(self) -> list[SSEEvent]:
        """End of stream; returns an event left without its closing blank line, if any.

        The standard drops such an event; some OpenAI-compatible servers end the stream right
        after the last ``data:`` line, so it is dispatched here instead of being lost.
        """
        events = self._parse(self._decoder.decode(b"", final=True), final=True)
        if self._buffer:
            self._line(self._buffer)
            self._buffer = ""
        dispatched = self._dispatch()
        if dispatched is not None:
            events.append(dispatched)
        return events

    def _parse(self, text: str, *, final: bool) -> list[SSEEvent]:
        if self._first and text:
            text = text.removeprefix("\ufeff")  # a byte-order mark is allowed once, at the start
            self._first = False
        buffer = self._buffer + text
        events: list[SSEEvent] = []
        start = 0
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                if cr + 1 == len(buffer) and not final:
                    break  # a "\r" at the end of a chunk may be the first half of "\r\n"
                end, after = cr, cr + 2 if buffer.startswith("\n", cr + 1) else cr + 1
            else:
                end, after = lf, lf + 1
            line = buffer[start:end]
            start = after
            if line:
                self._line(line)
            else:
                dispatched = self._dispatch()
                if dispatched is not None:
                    events.append(dispatched)
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment, such as a keep-alive
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        # "retry" and unknown fields are ignored: there is no reconnection here.

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(data="\n".join(data), event=event or "message", id=self._id)
