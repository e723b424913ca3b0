"""examples/ai-chat/steps/sse.py: the Sans-I/O event-stream parser, on a recorded OpenAI stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ai_chat_example import load

(sse,) = load("sse")

# A chat-completions stream as OpenAI sends it (ids shortened), with a keep-alive comment and
# a multi-byte character, ended by [DONE].
RECORDED = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"Caf\xc3\xa9"},"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":" au lait \xe2\x98\x95"},"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


def parse(*chunks: bytes) -> list[Any]:
    parser = sse.SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    events.extend(parser.close())
    return events


def test_recorded_openai_stream_gives_one_event_per_data_line_and_skips_comments() -> None:
    events = parse(RECORDED)
    assert [e.event for e in events] == ["message"] * 5
    assert events[-1].data == "[DONE]"
    contents = [json.loads(e.data)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents == ["", "Café", " au lait ☕", None]


def test_the_same_events_whatever_the_chunk_boundaries() -> None:
    whole = parse(RECORDED)
    # Every split point, including inside "\n\n" and inside the UTF-8 bytes of "é" and "☕".
    for cut in range(1, len(RECORDED)):
        assert parse(RECORDED[:cut], RECORDED[cut:]) == whole, cut
    assert parse(*(RECORDED[i : i + 1] for i in range(len(RECORDED)))) == whole


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_of_the_standard(newline: bytes) -> None:
    stream = newline.join([b"event: delta", b"id: 7", b"data: a", b"data:b", b"", b""])
    for cut in range(1, len(stream)):
        events = parse(stream[:cut], stream[cut:])
        assert [(e.event, e.id, e.data) for e in events] == [("delta", "7", "a\nb")], cut


def test_a_cr_lf_split_across_chunks_is_one_line_break() -> None:
    parser = sse.SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == []  # "\r\n" then a lone "\r" held back: may start "\r\n"
    assert [e.data for e in parser.feed(b"\ndata: y\r\n\r\n")] == ["x", "y"]


def test_blank_lines_and_comments_alone_dispatch_nothing() -> None:
    assert parse(b"\n\n: ping\n\n:\n\nevent: nothing\n\n") == []


def test_a_last_event_without_its_blank_line_is_kept_at_close() -> None:
    parser = sse.SSEParser()
    assert parser.feed(b'data: {"a": 1}\n\ndata: tail') == [sse.SSEEvent(data='{"a": 1}')]
    assert parser.close() == [sse.SSEEvent(data="tail")]


def test_a_leading_byte_order_mark_and_one_space_after_the_colon_are_dropped() -> None:
    events = parse(b"\xef\xbb\xbfdata:  two spaces\n\n")
    assert [e.data for e in events] == [" two spaces"]
