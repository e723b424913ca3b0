"""The codec: decoding client frames and encoding server frames (surge.protocol.codec)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.client.frames import decode_server_frame
from surge.errors import ProtocolError
from surge.protocol.codec import (
    ACCESS_DENIED,
    INVALID_MESSAGE,
    MAX_CURSOR_CHARS,
    MAX_PAGE_LIMIT,
    Frame,
    PatchFrame,
    decode_client_message,
    encode_change,
    encode_error,
    encode_event,
    encode_group_sync,
    encode_item_sync,
    encode_page,
    encode_patch,
)
from surge.protocol.ids import MAX_ID_LENGTH
from surge.protocol.messages import Join, Leave, Page, SubscriptionRequest
from surge.streams.feed import Change, EphemeralEvent
from surge.streams.ops import apply_ops

GROUP_DATA = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "sub-1"}
ITEM_DATA = {**GROUP_DATA, "id": "t1"}
ID_FIELDS = ["streamName", "groupId", "subscriptionId", "id"]


def frame(kind: str, data: Any) -> str:
    return orjson.dumps({"type": kind, "data": data}).decode()


def decode_error(raw: str | bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_client_message(raw)
    return str(info.value)


def parsed(f: Frame) -> dict[str, Any]:
    envelope = orjson.loads(f.text)
    assert isinstance(envelope, dict)
    return envelope


# --- decoding ------------------------------------------------------------------------------


def test_group_join_decodes_to_join_without_id() -> None:
    assert decode_client_message(frame("join", GROUP_DATA)) == Join(
        SubscriptionRequest(stream="todo", group="inbox", id=None, subscription_id="sub-1")
    )


def test_item_join_decodes_to_join_with_id() -> None:
    message = decode_client_message(frame("join", ITEM_DATA))
    assert message == Join(
        SubscriptionRequest(stream="todo", group="inbox", id="t1", subscription_id="sub-1")
    )
    assert isinstance(message, Join)
    assert message.request.is_item
    assert message.request.key == ("todo", "inbox", "t1")


def test_group_join_request_is_keyed_by_stream_and_group() -> None:
    message = decode_client_message(frame("join", GROUP_DATA))
    assert isinstance(message, Join)
    assert not message.request.is_item
    assert message.request.key == ("todo", "inbox")


def test_group_leave_decodes_to_leave_without_id() -> None:
    assert decode_client_message(frame("leave", GROUP_DATA)) == Leave(
        SubscriptionRequest(stream="todo", group="inbox", id=None, subscription_id="sub-1")
    )


def test_item_leave_decodes_to_leave_with_id() -> None:
    assert decode_client_message(frame("leave", ITEM_DATA)) == Leave(
        SubscriptionRequest(stream="todo", group="inbox", id="t1", subscription_id="sub-1")
    )


def test_bytes_frame_decodes_like_text() -> None:
    raw = frame("join", ITEM_DATA)
    assert decode_client_message(raw.encode()) == decode_client_message(raw)


def test_extra_keys_in_frame_and_data_are_ignored() -> None:
    raw = orjson.dumps({"type": "join", "data": {**GROUP_DATA, "extra": 1}, "v": 2}).decode()
    assert decode_client_message(raw) == decode_client_message(frame("join", GROUP_DATA))


@pytest.mark.parametrize("kind", ["ping", "subscribe", "JOIN", "", "presence"])
def test_unknown_type_is_ignored(kind: str) -> None:
    assert decode_client_message(orjson.dumps({"type": kind, "data": 5}).decode()) is None


def test_unknown_type_without_data_is_ignored() -> None:
    assert decode_client_message('{"type":"hello"}') is None


@pytest.mark.parametrize(
    "raw",
    ["", "{", "not json", '{"type":"join"', "{'type':'join'}", '{"type":"join"} trailing', "NaN"],
)
def test_invalid_json_is_a_protocol_error(raw: str) -> None:
    assert "not valid JSON" in decode_error(raw)


def test_invalid_utf8_bytes_are_a_protocol_error() -> None:
    assert "not valid JSON" in decode_error(b'{"type":"\xff"}')


@pytest.mark.parametrize(
    ("raw", "type_name"),
    [
        ("[]", "list"),
        ('[{"type":"join"}]', "list"),
        ("42", "int"),
        ("1.5", "float"),
        ('"join"', "str"),
        ("null", "NoneType"),
        ("true", "bool"),
    ],
)
def test_non_object_frame_is_a_protocol_error_naming_its_type(raw: str, type_name: str) -> None:
    message = decode_error(raw)
    assert "must be a JSON object" in message
    assert type_name in message


@pytest.mark.parametrize(
    "raw", ['{"data":{}}', '{"type":null}', '{"type":1}', '{"type":["join"]}', "{}"]
)
def test_missing_or_non_string_type_is_a_protocol_error(raw: str) -> None:
    assert '"type"' in decode_error(raw)


@pytest.mark.parametrize("kind", ["join", "leave"])
@pytest.mark.parametrize("data", ["absent", None, [], "x", 3])
def test_missing_or_non_object_data_is_a_protocol_error(kind: str, data: Any) -> None:
    body: dict[str, Any] = {"type": kind}
    if data != "absent":
        body["data"] = data
    message = decode_error(orjson.dumps(body).decode())
    assert message.startswith(f"{kind}: ")
    assert '"data"' in message


@pytest.mark.parametrize("field", ["streamName", "groupId", "subscriptionId"])
def test_missing_required_field_is_a_protocol_error_naming_it(field: str) -> None:
    data = {k: v for k, v in GROUP_DATA.items() if k != field}
    assert decode_error(frame("join", data)) == f"join: {field} must be a string"


@pytest.mark.parametrize("kind", ["join", "leave"])
@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        (7, "must be a string"),
        (True, "must be a string"),
        (["t1"], "must be a string"),
        ({"a": 1}, "must be a string"),
        ("x" * (MAX_ID_LENGTH + 1), f"is longer than {MAX_ID_LENGTH} characters"),
        ("t\x001", "contains control characters"),
        ("t\n1", "contains control characters"),
        ("t\x7f", "contains control characters"),
    ],
)
def test_bad_id_field_is_a_protocol_error_naming_the_field(
    kind: str, field: str, value: Any, problem: str
) -> None:
    assert decode_error(frame(kind, {**ITEM_DATA, field: value})) == f"{kind}: {field} {problem}"


@pytest.mark.parametrize("field", ["streamName", "groupId", "subscriptionId"])
def test_null_required_field_is_a_protocol_error(field: str) -> None:
    assert decode_error(frame("join", {**GROUP_DATA, field: None})) == (
        f"join: {field} must be a string"
    )


def test_protocol_error_carries_invalid_message_code() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client_message("[]")
    assert info.value.code == INVALID_MESSAGE


@pytest.mark.parametrize("value", ["日本語", "héllo wörld", "🚀/é:ñ", "a" * MAX_ID_LENGTH])
def test_unicode_and_max_length_ids_are_accepted_verbatim(value: str) -> None:
    data = {"streamName": value, "groupId": value, "id": value, "subscriptionId": value}
    message = decode_client_message(frame("join", data))
    assert message == Join(SubscriptionRequest(value, value, value, value))


@given(st.text())
def test_decoding_arbitrary_text_returns_a_message_or_raises_protocol_error(raw: str) -> None:
    _decode_never_crashes(raw)


@given(st.binary())
def test_decoding_arbitrary_bytes_returns_a_message_or_raises_protocol_error(raw: bytes) -> None:
    _decode_never_crashes(raw)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_id_like = st.one_of(st.text(), _json)
_data = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"streamName": _id_like, "groupId": _id_like, "subscriptionId": _id_like},
        optional={"id": _id_like},
    ),
)


@given(st.fixed_dictionaries({"type": st.sampled_from(["join", "leave"]) | _json, "data": _data}))
def test_decoding_arbitrary_json_shapes_returns_a_message_or_raises_protocol_error(
    body: dict[str, Any],
) -> None:
    _decode_never_crashes(orjson.dumps(body))


def _decode_never_crashes(raw: str | bytes) -> None:
    try:
        message = decode_client_message(raw)
    except ProtocolError:
        return
    assert message is None or isinstance(message, Join | Leave)


# --- encoding ------------------------------------------------------------------------------

TS = 1733880000123


def test_group_sync_envelope_has_no_id_and_carries_items_in_order() -> None:
    items = [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    f = encode_group_sync("todo", "inbox", items, TS)
    assert f.ts == TS
    envelope = parsed(f)
    assert list(envelope) == ["timestamp", "streamName", "groupId", "event"]
    assert envelope == {
        "timestamp": TS,
        "streamName": "todo",
        "groupId": "inbox",
        "event": {"type": "sync", "data": items},
    }


def test_group_sync_of_empty_group_sends_empty_list() -> None:
    assert parsed(encode_group_sync("todo", "inbox", [], TS))["event"] == {
        "type": "sync",
        "data": [],
    }


def test_item_sync_envelope_has_id_and_the_item() -> None:
    envelope = parsed(encode_item_sync("todo", "inbox", "t1", {"id": "t1", "done": False}, TS))
    assert list(envelope) == ["timestamp", "streamName", "groupId", "id", "event"]
    assert envelope == {
        "timestamp": TS,
        "streamName": "todo",
        "groupId": "inbox",
        "id": "t1",
        "event": {"type": "sync", "data": {"id": "t1", "done": False}},
    }


def test_item_sync_of_missing_item_sends_data_null() -> None:
    f = encode_item_sync("todo", "inbox", "t1", None, TS)
    assert '"data":null' in f.text
    envelope = parsed(f)
    assert envelope["id"] == "t1"
    assert envelope["event"] == {"type": "sync", "data": None}


@pytest.mark.parametrize("kind", ["create", "update", "delete"])
def test_change_envelope_has_id_and_item_with_id(kind: Any) -> None:
    item = {"id": "t1", "title": "milk"}
    change = Change(kind=kind, stream="todo", group="inbox", id="t1", item=item, seq=3)
    envelope = parsed(encode_change(change, TS))
    assert list(envelope) == ["timestamp", "streamName", "groupId", "id", "event"]
    assert envelope == {
        "timestamp": TS,
        "streamName": "todo",
        "groupId": "inbox",
        "id": "t1",
        "event": {"type": kind, "data": {"id": "t1", "title": "milk"}},
    }


def test_group_ephemeral_event_envelope_has_no_id() -> None:
    event = EphemeralEvent("todo", "inbox", None, {"type": "typing", "data": {"who": "ann"}})
    envelope = parsed(encode_event(event, TS))
    assert list(envelope) == ["timestamp", "streamName", "groupId", "event"]
    assert envelope["event"] == {
        "type": "event",
        "event": {"type": "typing", "data": {"who": "ann"}},
    }


def test_item_ephemeral_event_envelope_has_id() -> None:
    event = EphemeralEvent("todo", "inbox", "t1", {"type": "ping", "data": 1})
    envelope = parsed(encode_event(event, TS))
    assert list(envelope) == ["timestamp", "streamName", "groupId", "id", "event"]
    assert envelope["id"] == "t1"
    assert envelope["event"] == {"type": "event", "event": {"type": "ping", "data": 1}}


def test_access_denied_error_is_addressed_like_an_item_join() -> None:
    f = encode_error(ACCESS_DENIED, "no", TS, stream="todo", group="inbox", id="t1")
    envelope = parsed(f)
    assert list(envelope) == ["timestamp", "streamName", "groupId", "id", "event"]
    assert envelope == {
        "timestamp": TS,
        "streamName": "todo",
        "groupId": "inbox",
        "id": "t1",
        "event": {
            "type": "event",
            "event": {"type": "error", "data": {"code": "STREAM_ACCESS_DENIED", "message": "no"}},
        },
    }


def test_access_denied_error_for_group_join_has_no_id() -> None:
    envelope = parsed(encode_error(ACCESS_DENIED, "no", TS, stream="todo", group="inbox"))
    assert list(envelope) == ["timestamp", "streamName", "groupId", "event"]
    assert envelope["event"]["event"]["data"] == {"code": ACCESS_DENIED, "message": "no"}


def test_unaddressed_error_has_only_timestamp_and_event() -> None:
    envelope = parsed(encode_error(INVALID_MESSAGE, "bad frame", TS))
    assert envelope == {
        "timestamp": TS,
        "event": {
            "type": "event",
            "event": {"type": "error", "data": {"code": INVALID_MESSAGE, "message": "bad frame"}},
        },
    }


@pytest.mark.parametrize(
    "f",
    [
        encode_group_sync("todo", "inbox", [], TS),
        encode_item_sync("todo", "inbox", "t1", None, TS),
        encode_change(Change("create", "todo", "inbox", "t1", {"id": "t1"}, 1), TS),
        encode_event(EphemeralEvent("todo", "inbox", None, {"type": "x", "data": None}), TS),
        encode_error(INVALID_MESSAGE, "m", TS),
    ],
)
def test_every_frame_text_starts_with_its_timestamp(f: Frame) -> None:
    assert f.text.startswith(f'{{"timestamp":{TS},')
    assert next(iter(parsed(f))) == "timestamp"


def test_non_ascii_data_encodes_to_valid_utf8_json() -> None:
    item = {"id": "日本", "title": "café ☕ 🚀", "tags": ["ñ", "Ω"], "quote": 'say "hi"\n'}
    f = encode_change(Change("update", "tödo", "grüppe", "日本", item, 1), TS)
    encoded = f.text.encode("utf-8")
    envelope = orjson.loads(encoded)
    assert envelope["streamName"] == "tödo"
    assert envelope["groupId"] == "grüppe"
    assert envelope["id"] == "日本"
    assert envelope["event"]["data"] == item


# --- restamping ----------------------------------------------------------------------------


def _sample_frames(ts: int) -> list[Frame]:
    return [
        encode_group_sync("todo", "inbox", [{"id": "a", "timestamp": 1}], ts),
        encode_item_sync("todo", "inbox", "t1", {"id": "t1", "n": ts}, ts),
        encode_change(Change("delete", "todo", "inbox", "t1", {"id": "t1"}, 9), ts),
        encode_event(EphemeralEvent("todo", "inbox", "t1", {"type": "e", "data": "ü"}), ts),
        encode_error(ACCESS_DENIED, "denied", ts, stream="todo", group="inbox"),
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (TS, TS + 1),
        (1, TS),
        (TS, 1),
        (0, 9),
        (9, 10),
        (99, 100),
        (1000, 999),
        (TS, 10**15),
        (10**15, 5),
        (2**53 + 7, 2**53 + 8),
    ],
)
def test_restamped_frame_differs_only_in_timestamp(old: int, new: int) -> None:
    for original in _sample_frames(old):
        restamped = original.restamped(new)
        assert restamped.ts == new
        before = orjson.loads(original.text)
        after = orjson.loads(restamped.text)
        assert after["timestamp"] == new
        assert list(after) == list(before)
        assert {**after, "timestamp": old} == before
        assert restamped.text.startswith(f'{{"timestamp":{new},')


def test_restamping_leaves_the_original_frame_unchanged() -> None:
    original = encode_group_sync("todo", "inbox", [], 5)
    text = original.text
    original.restamped(123456)
    assert original.ts == 5
    assert original.text == text


def test_restamping_twice_is_the_same_as_restamping_once() -> None:
    original = encode_item_sync("todo", "inbox", "t1", None, 7)
    assert original.restamped(1000).restamped(42) == original.restamped(42)


@given(old=st.integers(0, 2**63 - 1), new=st.integers(0, 2**63 - 1))
def test_restamping_any_timestamp_yields_the_same_message(old: int, new: int) -> None:
    original = encode_change(Change("update", "todo", "inbox", "t1", {"id": "t1"}, 1), old)
    after = orjson.loads(original.restamped(new).text)
    assert after == {**orjson.loads(original.text), "timestamp": new}


# --- deltas and windows (protocol.md sections 4 and 5) ------------------------------------------


def test_a_join_asking_for_deltas_decodes_with_them_and_without_means_false() -> None:
    asked = decode_client_message(frame("join", {**GROUP_DATA, "deltas": True}))
    plain = decode_client_message(frame("join", GROUP_DATA))
    null = decode_client_message(frame("join", {**GROUP_DATA, "deltas": None}))

    assert isinstance(asked, Join) and asked.request.deltas is True
    assert isinstance(plain, Join) and plain.request.deltas is False
    assert isinstance(null, Join) and null.request.deltas is False


@pytest.mark.parametrize("bad", ["yes", 1, [], {}])
def test_deltas_must_be_a_boolean(bad: Any) -> None:
    assert "deltas" in decode_error(frame("join", {**GROUP_DATA, "deltas": bad}))


def test_a_page_request_decodes_with_its_cursor_and_limit() -> None:
    message = decode_client_message(frame("page", {**GROUP_DATA, "before": "17", "limit": 25}))
    newest = decode_client_message(frame("page", GROUP_DATA))

    assert message == Page("todo", "inbox", "sub-1", "17", 25)
    assert newest == Page("todo", "inbox", "sub-1", None, None)


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        ({"before": 17}, "before"),
        ({"before": ""}, "before"),
        ({"before": "x" * (MAX_CURSOR_CHARS + 1)}, "before"),
        ({"limit": 0}, "limit"),
        ({"limit": MAX_PAGE_LIMIT + 1}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"subscriptionId": ""}, "subscriptionId"),
    ],
)
def test_a_bad_page_request_is_a_protocol_error_naming_the_field(
    extra: dict[str, Any], word: str
) -> None:
    assert word in decode_error(frame("page", {**GROUP_DATA, **extra}))


def updated(ops: list[dict[str, Any]] | None) -> Change:
    item = {"id": "m1", "content": "Hello world"}
    return Change("update", "chat", "c1", "m1", item, 7, ops)


def test_a_patch_frame_carries_the_ops_and_gives_the_whole_item_frame_on_demand() -> None:
    change = updated([{"type": "append", "path": "content", "value": " world"}])

    patch = encode_patch(change, 1000)

    assert isinstance(patch, PatchFrame) and patch.source is change
    assert parsed(patch) == {
        "timestamp": 1000,
        "streamName": "chat",
        "groupId": "c1",
        "id": "m1",
        "event": {"type": "patch", "data": {"ops": change.ops}},
    }
    assert patch.full == encode_change(change, 1000)
    assert patch.full is patch.full  # encoded once, then shared


def test_a_restamped_patch_is_still_a_patch_and_its_whole_item_follows() -> None:
    patch = encode_patch(updated([{"type": "increment", "path": "n"}]), 5)
    full = patch.full

    again = patch.restamped(9)

    assert isinstance(again, PatchFrame)
    assert parsed(again)["timestamp"] == 9 and parsed(again)["event"]["type"] == "patch"
    assert again.full == full.restamped(9)
    assert parsed(patch.restamped(10).full)["timestamp"] == 10


def test_the_compact_patch_form_is_one_array_and_decodes_to_the_verbose_patch() -> None:
    ops: list[dict[str, Any]] = [
        {"type": "append", "path": "content", "value": " the"},
        {"type": "increment", "path": "n"},
        {"type": "decrement", "path": "m", "by": 2.5},
        {"type": "remove", "path": "x"},
        {"type": "set", "path": "a.b", "value": {"c": [1]}},
        {"type": "merge", "path": "", "value": {"k": None}},
    ]
    patch = encode_patch(updated(ops), 1000, "ep0")

    compact = patch.compact

    assert isinstance(compact, PatchFrame) and compact.change == ("chat", "c1", "m1", "patch")
    assert compact.text == (
        '{"timestamp":1000,"patch":["chat","c1","m1",7,"ep0",[["append","content"," the"],'
        '["increment","n",1],["decrement","m",2.5],["remove","x"],["set","a.b",{"c":[1]}],'
        '["merge","",{"k":null}]]]}'
    )
    assert compact is patch.compact and compact.compact is compact  # encoded once
    assert compact.full is patch.full  # the forms share one whole-item frame
    verbose, short = decode_server_frame(patch.text), decode_server_frame(compact.text)
    assert short.kind == "patch" and (short.stream, short.group, short.id) == ("chat", "c1", "m1")
    assert (short.offset, short.epoch, short.timestamp) == (7, "ep0", 1000)
    assert apply_ops({"n": 1, "m": 5, "x": 0}, short.data["ops"], "m1") == apply_ops(
        {"n": 1, "m": 5, "x": 0}, verbose.data["ops"], "m1"
    )
    assert len(compact.wire) < len(patch.wire) * 0.6


def test_a_restamped_compact_patch_stays_compact_and_keeps_its_whole_item() -> None:
    compact = encode_patch(updated([{"type": "increment", "path": "n"}]), 5).compact

    again = compact.restamped(9)

    assert (
        again.text == '{"timestamp":9,"patch":["chat","c1","m1",null,null,[["increment","n",1]]]}'
    )
    assert again.compact is again
    assert parsed(again.full)["timestamp"] == 9 and parsed(again.full)["event"]["type"] == "update"


def test_a_join_may_ask_for_compact_patches_only_with_deltas() -> None:
    def join(**extra: object) -> Join:
        data = {"streamName": "chat", "groupId": "c1", "subscriptionId": "s", **extra}
        message = decode_client_message(orjson.dumps({"type": "join", "data": data}))
        assert isinstance(message, Join)
        return message

    assert join(deltas=True, compact=True).request.patch_form == 2
    assert join(deltas=True).request.patch_form == 1
    assert join(compact=True).request.patch_form == 0  # compact alone asks for nothing
    with pytest.raises(ProtocolError, match='"compact" must be true or false'):
        join(deltas=True, compact=1)


def test_a_windowed_sync_and_a_page_carry_the_cursor_before_the_event() -> None:
    items = [{"id": "a"}]

    sync = encode_group_sync("chat", "c1", items, 3, more="12")
    page = encode_page("chat", "c1", items, 4, more="9")
    last = encode_page("chat", "c1", [], 5)

    assert parsed(sync) == {
        "timestamp": 3,
        "streamName": "chat",
        "groupId": "c1",
        "more": "12",
        "event": {"type": "sync", "data": items},
    }
    assert parsed(page)["more"] == "9" and parsed(page)["event"] == {"type": "page", "data": items}
    assert "more" not in parsed(last)
    assert "more" not in parsed(encode_group_sync("chat", "c1", items, 6))


# -- offsets, epochs and resume (docs/protocol.md sections 2-3) ---------------------------------


def test_a_join_since_is_decoded_and_left_out_of_equality() -> None:
    from surge.protocol.messages import Since

    join = decode_client_message(
        '{"type":"join","data":{"streamName":"todo","groupId":"g","subscriptionId":"s",'
        '"since":{"offset":42,"epoch":"q7Lc9w"}}}'
    )
    leave = decode_client_message(
        '{"type":"leave","data":{"streamName":"todo","groupId":"g","subscriptionId":"s"}}'
    )
    assert isinstance(join, Join) and isinstance(leave, Leave)
    assert join.request.since == Since(42, "q7Lc9w")
    assert join.request == leave.request and hash(join.request) == hash(leave.request)
    null = decode_client_message(
        '{"type":"join","data":{"streamName":"t","groupId":"g","subscriptionId":"s","since":null}}'
    )
    assert isinstance(null, Join) and null.request.since is None


@pytest.mark.parametrize(
    "since",
    [
        '"42"',
        '[42, "e"]',
        '{"offset":"1","epoch":"e"}',
        '{"offset":-1,"epoch":"e"}',
        '{"offset":true,"epoch":"e"}',
        '{"offset":1}',
        '{"offset":1,"epoch":""}',
        '{"offset":1,"epoch":"' + "e" * 65 + '"}',
        '{"offset":1.5,"epoch":"e"}',
    ],
)
def test_a_malformed_since_is_a_protocol_error(since: str) -> None:
    with pytest.raises(ProtocolError, match="since"):
        decode_client_message(
            '{"type":"join","data":{"streamName":"t","groupId":"g","subscriptionId":"s",'
            f'"since":{since}}}}}'
        )


def test_frames_carry_offset_and_epoch_when_given_one() -> None:
    change = Change("update", "todo", "g", "t1", {"id": "t1"}, 7)
    assert orjson.loads(encode_change(change, TS, "E").text) == {
        "timestamp": TS,
        "streamName": "todo",
        "groupId": "g",
        "id": "t1",
        "offset": 7,
        "epoch": "E",
        "event": {"type": "update", "data": {"id": "t1"}},
    }
    assert "offset" not in orjson.loads(encode_change(change, TS).text)
    event = EphemeralEvent("todo", "g", None, {"type": "x", "data": 1}, 8)
    assert orjson.loads(encode_event(event, TS, "E").text)["offset"] == 8
    unnumbered = EphemeralEvent("todo", "g", None, {"type": "presence", "data": 1})
    assert "offset" not in orjson.loads(encode_event(unnumbered, TS, "E").text)
    sync = encode_group_sync("todo", "g", [], TS, offset=9, epoch="E")
    assert orjson.loads(sync.text)["offset"] == 9


def test_resume_and_unrecovered_frames() -> None:
    from surge.protocol.codec import encode_resume, unrecovered

    request = SubscriptionRequest("todo", "g", None, "s")
    resume = orjson.loads(encode_resume(request, 42, 3, 57, "E", TS).text)
    assert resume == {
        "timestamp": TS,
        "streamName": "todo",
        "groupId": "g",
        "offset": 57,
        "epoch": "E",
        "event": {"type": "resume", "data": {"since": 42, "missed": 3}},
    }
    sync = encode_group_sync("todo", "g", [{"id": "a"}], TS, offset=9, epoch="E")
    marked = unrecovered(sync, TS + 5)
    assert marked.ts == TS + 5
    assert orjson.loads(marked.text) == {
        **orjson.loads(sync.text),
        "timestamp": TS + 5,
        "recovered": False,
    }


def test_a_batched_resume_carries_every_missed_message_once_and_decodes_to_their_frames() -> None:
    from surge.protocol.codec import encode_resume_batch, replay_change, replay_event

    request = SubscriptionRequest("chat", "c1", None, "s", deltas=True, compact=True)
    ops: list[dict[str, Any]] = [
        {"type": "append", "path": "content", "value": "!"},
        {"type": "increment", "path": "n"},
    ]
    messages: list[Change | EphemeralEvent] = [
        Change("create", "chat", "c1", "m2", {"id": "m2", "content": "hi"}, 5),
        Change("update", "chat", "c1", "m1", {"id": "m1", "content": "Hello!", "n": 1}, 6, ops),
        EphemeralEvent("chat", "c1", None, {"type": "typing", "data": "ann"}, 7),
        Change("update", "chat", "c1", "m2", {"id": "m2", "content": "ho"}, 8),  # a set
        EphemeralEvent("chat", "c1", "m2", {"type": "seen", "data": 1}, 9),
        Change("delete", "chat", "c1", "m2", {"id": "m2", "content": "ho"}, 10),
    ]
    entries = [
        replay_change(m, True) if isinstance(m, Change) else replay_event(m) for m in messages
    ]

    frame = encode_resume_batch(request, 4, entries, 11, "E", TS)

    assert orjson.loads(frame.text) == {
        "timestamp": TS,
        "streamName": "chat",
        "groupId": "c1",
        "offset": 11,
        "epoch": "E",
        "event": {
            "type": "resume",
            "data": {
                "since": 4,
                "missed": 6,
                "replay": [
                    [5, "create", "m2", {"id": "m2", "content": "hi"}],
                    [6, "patch", "m1", [["append", "content", "!"], ["increment", "n", 1]]],
                    [7, "event", None, {"type": "typing", "data": "ann"}],
                    [8, "update", "m2", {"id": "m2", "content": "ho"}],
                    [9, "event", "m2", {"type": "seen", "data": 1}],
                    [10, "delete", "m2", {"id": "m2", "content": "ho"}],
                ],
            },
        },
    }
    # Surge's Python client reads each entry as the frame it was live (encoded apart).
    decoded = decode_server_frame(frame.text)
    assert (decoded.kind, decoded.offset, decoded.data["missed"]) == ("resume", 11, 6)
    live = [
        encode_patch(m, TS, "E").compact
        if isinstance(m, Change) and m.ops is not None
        else encode_change(m, TS, "E")
        if isinstance(m, Change)
        else encode_event(m, TS, "E")
        for m in messages
    ]
    expected = [decode_server_frame(f.text) for f in live]
    assert [
        (f.stream, f.group, f.id, f.kind, f.data, f.event_type, f.event_data, f.offset, f.epoch)
        for f in decoded.replay
    ] == [
        (f.stream, f.group, f.id, f.kind, f.data, f.event_type, f.event_data, f.offset, f.epoch)
        for f in expected
    ]
    assert all(f.replayed and f.timestamp == TS for f in decoded.replay)
    # Stated once: well under the frames one by one.
    assert frame.size < 0.6 * sum(f.size for f in live)


def test_a_batched_resume_without_deltas_replays_updates_whole_and_skips_malformed_entries() -> (
    None
):
    from surge.protocol.codec import encode_resume_batch, replay_change

    change = updated([{"type": "append", "path": "content", "value": "!"}])
    assert replay_change(change, False) == [7, "update", "m1", change.item]
    request = SubscriptionRequest("chat", "c1", "m1", "s", deltas=True, compact=True)
    text = encode_resume_batch(request, 1, [[7, "update", "m1", change.item]], 7, "E", TS).text
    assert orjson.loads(text)["id"] == "m1"  # an item subscription's resume names its item
    body = orjson.loads(text)
    body["event"]["data"]["replay"] += [[8, "patch"], ["x", "update", "m1", {}], 9]
    decoded = decode_server_frame(orjson.dumps(body))
    assert [(f.offset, f.kind) for f in decoded.replay] == [(7, "update")]
