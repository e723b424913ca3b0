"""The client's side of the wire format: decoding envelopes, encoding joins and leaves."""

from __future__ import annotations

import json

import pytest

from surge.client.frames import decode_server_frame, encode_join, encode_leave
from surge.errors import ProtocolError
from surge.protocol.codec import decode_client_message
from surge.protocol.messages import Join, Leave, SubscriptionRequest


def test_group_sync_has_no_id_and_keeps_the_items() -> None:
    frame = decode_server_frame(
        '{"timestamp":5,"streamName":"todo","groupId":"inbox","event":{"type":"sync","data":[]}}'
    )
    assert (frame.timestamp, frame.stream, frame.group, frame.id, frame.kind) == (
        5,
        "todo",
        "inbox",
        None,
        "sync",
    )
    assert frame.data == []


def test_ephemeral_event_exposes_its_own_type_and_data() -> None:
    text = json.dumps(
        {
            "timestamp": 1,
            "streamName": "todo",
            "groupId": "g",
            "id": "t1",
            "event": {"type": "event", "event": {"type": "typing", "data": {"u": 1}}},
        }
    )
    frame = decode_server_frame(text)
    assert (frame.kind, frame.event_type, frame.event_data, frame.id) == (
        "event",
        "typing",
        {"u": 1},
        "t1",
    )
    assert frame.error is None


def test_error_event_gives_code_and_message() -> None:
    text = json.dumps(
        {
            "timestamp": 1,
            "event": {
                "type": "event",
                "event": {
                    "type": "error",
                    "data": {"code": "STREAM_ACCESS_DENIED", "message": "access denied"},
                },
            },
        }
    )
    assert decode_server_frame(text).error == ("STREAM_ACCESS_DENIED", "access denied")


def test_resume_fields_are_read_when_present_and_none_otherwise() -> None:
    base = {
        "timestamp": 1,
        "streamName": "s",
        "groupId": "g",
        "id": "a",
        "event": {"type": "create", "data": {"id": "a"}},
    }
    assert decode_server_frame(json.dumps(base)).offset is None
    frame = decode_server_frame(json.dumps({**base, "offset": 7, "epoch": "e1"}))
    assert (frame.offset, frame.epoch) == (7, "e1")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"event":{"type":"sync"}}',
        '{"timestamp":"1","event":{"type":"sync"}}',
        '{"timestamp":1}',
        '{"timestamp":true,"event":{"type":"sync"}}',
    ],
)
def test_a_frame_that_is_not_an_envelope_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode_server_frame(text)


def test_joins_and_leaves_are_what_the_server_codec_reads() -> None:
    group = SubscriptionRequest("todo", "inbox", None, "s1")
    item = SubscriptionRequest("todo", "inbox", "t1", "s2")
    assert decode_client_message(encode_join(group)) == Join(group)
    assert decode_client_message(encode_join(item)) == Join(item)
    assert decode_client_message(encode_leave(item)) == Leave(item)
    assert "id" not in json.loads(encode_join(group))["data"]
