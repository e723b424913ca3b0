"""The per-connection protocol state machine (surge.protocol.session)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from surge.protocol.codec import ACCESS_DENIED, INVALID_MESSAGE, TOO_MANY_SUBSCRIPTIONS
from surge.protocol.codes import UNKNOWN_SUBSCRIPTION
from surge.protocol.messages import SubscriptionRequest
from surge.protocol.session import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    Action,
    CancelCheck,
    CheckAccess,
    Close,
    SendError,
    SendPage,
    Session,
    Subscribe,
    Unsubscribe,
)


def request(
    sid: str = "sub-1", *, group: str = "inbox", id: str | None = None
) -> SubscriptionRequest:
    return SubscriptionRequest(stream="todo", group=group, id=id, subscription_id=sid)


def frame(kind: str, req: SubscriptionRequest) -> str:
    data = {"streamName": req.stream, "groupId": req.group, "subscriptionId": req.subscription_id}
    if req.id is not None:
        data["id"] = req.id
    return orjson.dumps({"type": kind, "data": data}).decode()


def join(session: Session, req: SubscriptionRequest) -> list[Action]:
    return session.receive_text(frame("join", req))


def leave(session: Session, req: SubscriptionRequest) -> list[Action]:
    return session.receive_text(frame("leave", req))


def subscribed(session: Session, req: SubscriptionRequest) -> None:
    """Join and grant access, checking the actions of the happy path."""
    assert join(session, req) == [CheckAccess(req)]
    assert session.access_granted(req) == [Subscribe(req)]


# --- join / access ---------------------------------------------------------------------------


@pytest.mark.parametrize("req", [request(), request(id="t1")], ids=["group", "item"])
def test_join_asks_for_an_access_check_and_records_nothing_yet(req: SubscriptionRequest) -> None:
    session = Session()
    assert join(session, req) == [CheckAccess(req)]
    assert session.subscriptions == {}


@pytest.mark.parametrize("req", [request(), request(id="t1")], ids=["group", "item"])
def test_join_granted_subscribes_and_records_the_subscription(req: SubscriptionRequest) -> None:
    session = Session()
    join(session, req)
    assert session.access_granted(req) == [Subscribe(req)]
    assert session.subscriptions == {"sub-1": req}


@pytest.mark.parametrize("req", [request(), request(id="t1")], ids=["group", "item"])
def test_join_refused_by_can_access_sends_access_denied(req: SubscriptionRequest) -> None:
    session = Session()
    join(session, req)
    assert session.access_denied(req, "not yours") == [SendError(ACCESS_DENIED, "not yours", req)]
    assert session.subscriptions == {}


def test_denied_join_does_not_count_against_the_subscription_limit() -> None:
    session = Session(max_subscriptions=1)
    join(session, request("a"))
    session.access_denied(request("a"), "no")
    assert join(session, request("b")) == [CheckAccess(request("b"))]


def test_session_stays_open_after_access_denied() -> None:
    session = Session()
    join(session, request("a"))
    session.access_denied(request("a"), "no")
    assert not session.closed
    subscribed(session, request("b"))


def test_rejoin_with_same_subscription_id_unsubscribes_the_old_one_first() -> None:
    session = Session()
    old, new = request("s", group="inbox"), request("s", group="done", id="t9")
    subscribed(session, old)
    assert join(session, new) == [Unsubscribe(old), CheckAccess(new)]
    assert session.subscriptions == {}
    assert session.access_granted(new) == [Subscribe(new)]
    assert session.subscriptions == {"s": new}


def test_rejoin_that_is_denied_leaves_no_subscription() -> None:
    session = Session()
    subscribed(session, request("s"))
    join(session, request("s"))
    assert session.access_denied(request("s"), "revoked") == [
        SendError(ACCESS_DENIED, "revoked", request("s"))
    ]
    assert session.subscriptions == {}


def test_rejoin_of_a_live_subscription_is_allowed_at_the_limit() -> None:
    session = Session(max_subscriptions=1)
    subscribed(session, request("s"))
    assert join(session, request("s", id="t1")) == [
        Unsubscribe(request("s")),
        CheckAccess(request("s", id="t1")),
    ]


# --- joins still waiting for their access check ---------------------------------------------


def test_leave_while_join_is_pending_cancels_the_join() -> None:
    # Frames keep their order: the leave must not be overtaken by its join's late grant.
    session = Session()
    join(session, request("s"))
    assert leave(session, request("s")) == [CancelCheck(request("s"))]
    assert session.access_granted(request("s")) == []
    assert session.subscriptions == {}


def test_leave_while_join_is_pending_swallows_its_late_denial() -> None:
    session = Session()
    join(session, request("s"))
    leave(session, request("s"))
    assert session.access_denied(request("s"), "no") == []


def test_rejoin_while_first_join_is_pending_subscribes_only_the_latest() -> None:
    session = Session()
    first, second = request("s"), request("s", id="t1")
    assert join(session, first) == [CheckAccess(first)]
    assert join(session, second) == [CancelCheck(first), CheckAccess(second)]
    assert session.access_granted(first) == []
    assert session.access_granted(second) == [Subscribe(second)]
    assert session.subscriptions == {"s": second}


def test_rejoin_while_pending_is_answered_in_any_order_without_leaking() -> None:
    session = Session()
    first, second = request("s"), request("s", id="t1")
    join(session, first)
    join(session, second)
    assert session.access_granted(second) == [Subscribe(second)]
    assert session.access_granted(first) == []
    assert session.subscriptions == {"s": second}


def test_rejoin_of_a_pending_subscription_is_allowed_at_the_limit() -> None:
    session = Session(max_subscriptions=1)
    join(session, request("s"))
    assert join(session, request("s", id="t1")) == [
        CancelCheck(request("s")),
        CheckAccess(request("s", id="t1")),
    ]


def test_access_answer_for_a_join_never_made_is_ignored() -> None:
    session = Session()
    assert session.access_granted(request("ghost")) == []
    assert session.access_denied(request("ghost"), "no") == []
    assert session.subscriptions == {}


# --- leave -----------------------------------------------------------------------------------


def test_leave_unsubscribes_this_sessions_subscription() -> None:
    session = Session()
    subscribed(session, request("s", id="t1"))
    assert leave(session, request("s", id="t1")) == [Unsubscribe(request("s", id="t1"))]
    assert session.subscriptions == {}


def test_leave_unsubscribes_what_was_joined_whatever_the_leave_data_says() -> None:
    # Subscriptions are keyed by subscriptionId: the recorded request is the one removed.
    session = Session()
    subscribed(session, request("s", group="inbox"))
    assert leave(session, request("s", group="other", id="x")) == [
        Unsubscribe(request("s", group="inbox"))
    ]


def test_leave_of_unknown_subscription_id_does_nothing() -> None:
    session = Session()
    subscribed(session, request("a"))
    assert leave(session, request("b")) == []
    assert session.subscriptions == {"a": request("a")}


def test_second_leave_of_the_same_subscription_does_nothing() -> None:
    session = Session()
    subscribed(session, request("s"))
    leave(session, request("s"))
    assert leave(session, request("s")) == []


def test_leave_frees_a_place_under_the_limit() -> None:
    session = Session(max_subscriptions=1)
    subscribed(session, request("a"))
    leave(session, request("a"))
    assert join(session, request("b")) == [CheckAccess(request("b"))]


# --- isolation between sessions --------------------------------------------------------------


def test_leave_in_one_session_does_not_touch_another_with_the_same_subscription_id() -> None:
    alice, bob = Session(), Session()
    subscribed(alice, request("s", group="a"))
    subscribed(bob, request("s", group="b"))
    assert leave(bob, request("s", group="b")) == [Unsubscribe(request("s", group="b"))]
    assert alice.subscriptions == {"s": request("s", group="a")}


def test_join_in_one_session_does_not_replace_another_with_the_same_subscription_id() -> None:
    alice, bob = Session(), Session()
    subscribed(alice, request("s", group="a"))
    assert join(bob, request("s", group="b")) == [CheckAccess(request("s", group="b"))]
    assert bob.access_granted(request("s", group="b")) == [Subscribe(request("s", group="b"))]
    assert alice.subscriptions == {"s": request("s", group="a")}


def test_closing_one_session_does_not_affect_another() -> None:
    alice, bob = Session(), Session()
    subscribed(alice, request("s"))
    subscribed(bob, request("s"))
    alice.receive_binary()
    assert bob.subscriptions == {"s": request("s")}
    assert not bob.closed


# --- subscription limit ----------------------------------------------------------------------


def test_join_over_max_subscriptions_sends_too_many_subscriptions() -> None:
    session = Session(max_subscriptions=2)
    subscribed(session, request("a"))
    subscribed(session, request("b"))
    actions = join(session, request("c"))
    assert len(actions) == 1
    error = actions[0]
    assert isinstance(error, SendError)
    assert error.code == TOO_MANY_SUBSCRIPTIONS
    assert error.request == request("c")
    assert "2" in error.message
    assert set(session.subscriptions) == {"a", "b"}


def test_pending_joins_count_against_max_subscriptions() -> None:
    session = Session(max_subscriptions=2)
    join(session, request("a"))
    join(session, request("b"))
    actions = join(session, request("c"))
    assert [a.code for a in actions if isinstance(a, SendError)] == [TOO_MANY_SUBSCRIPTIONS]
    assert not any(isinstance(a, CheckAccess) for a in actions)


def test_refused_join_over_the_limit_does_not_close_the_session() -> None:
    session = Session(max_subscriptions=0)
    join(session, request("a"))
    assert not session.closed


# --- malformed frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "null",
        '{"data":{}}',
        '{"type":"join"}',
        '{"type":"join","data":{"groupId":"g","subscriptionId":"s"}}',
        '{"type":"leave","data":{"streamName":"","groupId":"g","subscriptionId":"s"}}',
    ],
)
def test_malformed_frame_sends_invalid_message_and_keeps_the_session(text: str) -> None:
    session = Session()
    actions = session.receive_text(text)
    assert len(actions) == 1
    error = actions[0]
    assert isinstance(error, SendError)
    assert error.code == INVALID_MESSAGE
    assert error.request is None
    assert error.message
    assert not session.closed


def test_invalid_message_error_names_the_bad_field() -> None:
    session = Session()
    [error] = session.receive_text('{"type":"join","data":{"streamName":"t","groupId":"g"}}')
    assert isinstance(error, SendError)
    assert "subscriptionId" in error.message


def test_unknown_type_is_ignored_without_error() -> None:
    session = Session(max_errors=1)
    assert session.receive_text('{"type":"ping"}') == []
    assert not session.closed


def test_too_many_malformed_frames_unsubscribe_everything_then_close_1008() -> None:
    session = Session(max_errors=3)
    subscribed(session, request("a"))
    subscribed(session, request("b", id="t1"))
    for _ in range(2):
        [error] = session.receive_text("garbage")
        assert isinstance(error, SendError)
    actions = session.receive_text("garbage")
    assert isinstance(actions[0], SendError)
    assert actions[0].code == INVALID_MESSAGE
    assert set(actions[1:3]) == {Unsubscribe(request("a")), Unsubscribe(request("b", id="t1"))}
    assert len(actions) == 4
    close = actions[3]
    assert isinstance(close, Close)
    assert close.code == CLOSE_POLICY_VIOLATION
    assert session.closed
    assert session.subscriptions == {}


def test_valid_frames_between_errors_do_not_reset_the_error_budget() -> None:
    session = Session(max_errors=2)
    session.receive_text("garbage")
    subscribed(session, request("a"))
    actions = session.receive_text("garbage")
    assert isinstance(actions[-1], Close)
    assert actions[-1].code == CLOSE_POLICY_VIOLATION


def test_max_errors_of_one_closes_on_the_first_malformed_frame() -> None:
    session = Session(max_errors=1)
    actions = session.receive_text("{")
    assert [type(a) for a in actions] == [SendError, Close]


# --- binary and oversized frames -------------------------------------------------------------


def test_binary_frame_unsubscribes_everything_and_closes_1003() -> None:
    session = Session()
    subscribed(session, request("a"))
    actions = session.receive_binary()
    assert actions[0] == Unsubscribe(request("a"))
    assert len(actions) == 2
    close = actions[1]
    assert isinstance(close, Close)
    assert close.code == CLOSE_UNSUPPORTED_DATA
    assert session.closed
    assert session.subscriptions == {}


def test_oversized_text_frame_unsubscribes_everything_and_closes_1009() -> None:
    session = Session(max_frame_bytes=100)
    subscribed(session, request("a"))
    actions = session.receive_text("x" * 101)
    assert actions[0] == Unsubscribe(request("a"))
    close = actions[-1]
    assert isinstance(close, Close)
    assert close.code == CLOSE_MESSAGE_TOO_BIG
    assert session.closed


def test_text_frame_of_exactly_max_frame_bytes_is_accepted() -> None:
    text = frame("join", request())
    session = Session(max_frame_bytes=len(text.encode()))
    assert session.receive_text(text) == [CheckAccess(request())]


@pytest.mark.parametrize("char", ["é", "日", "🚀"])
def test_frame_size_counts_utf8_bytes_of_multibyte_characters(char: str) -> None:
    # Fewer characters than the limit, but more bytes: still too big.
    limit = 40
    text = char * (limit // len(char.encode()) + 1)
    assert len(text) <= limit < len(text.encode())
    session = Session(max_frame_bytes=limit)
    actions = session.receive_text(text)
    assert isinstance(actions[-1], Close)
    assert actions[-1].code == CLOSE_MESSAGE_TOO_BIG


def test_multibyte_frame_within_max_frame_bytes_is_accepted() -> None:
    req = request("日本", group="grüppe", id="🚀")
    text = frame("join", req)
    assert len(text.encode()) > len(text)
    session = Session(max_frame_bytes=len(text.encode()))
    assert session.receive_text(text) == [CheckAccess(req)]


def test_frame_with_lone_surrogate_is_an_invalid_message_not_a_crash() -> None:
    session = Session(max_frame_bytes=16)
    [error] = session.receive_text('"\ud800\ud800"')
    assert isinstance(error, SendError)
    assert error.code == INVALID_MESSAGE


# --- after close -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "close_with",
    [
        lambda s: s.receive_binary(),
        lambda s: s.receive_text("x" * (s.max_frame_bytes + 1)),
        lambda s: [s.receive_text("garbage") for _ in range(s.max_errors)],
    ],
    ids=["binary", "oversized", "errors"],
)
def test_closed_session_returns_no_actions_for_anything(
    close_with: Callable[[Session], object],
) -> None:
    session = Session(max_errors=2, max_frame_bytes=200)
    subscribed(session, request("live"))
    join(session, request("pending"))
    close_with(session)
    assert session.closed
    assert join(session, request("new")) == []
    assert leave(session, request("live")) == []
    assert session.receive_text("garbage") == []
    assert session.receive_text("x" * 1000) == []
    assert session.receive_binary() == []
    assert session.access_granted(request("pending")) == []
    assert session.access_denied(request("pending"), "no") == []
    assert session.subscriptions == {}


def test_join_granted_after_close_is_not_recorded() -> None:
    session = Session()
    join(session, request("s"))
    session.receive_binary()
    assert session.access_granted(request("s")) == []
    assert session.subscriptions == {}


def test_close_unsubscribes_only_live_subscriptions_not_pending_ones() -> None:
    session = Session()
    subscribed(session, request("live"))
    join(session, request("pending"))
    actions = session.receive_binary()
    assert [a for a in actions if isinstance(a, Unsubscribe)] == [Unsubscribe(request("live"))]
    assert [a for a in actions if isinstance(a, CancelCheck)] == [CancelCheck(request("pending"))]


# --- server-side decisions (rate limits, expiry, reauthorize) --------------------------------


def test_denied_join_may_carry_another_code_such_as_rate_limited() -> None:
    session = Session()
    req = request()
    join(session, req)
    assert session.access_denied(req, "slow down", "RATE_LIMITED") == [
        SendError("RATE_LIMITED", "slow down", req)
    ]
    assert session.subscriptions == {}


def test_server_close_cancels_checks_unsubscribes_everything_and_happens_once() -> None:
    session = Session()
    live, waiting = request("a"), request("b", group="other")
    subscribed(session, live)
    join(session, waiting)
    assert session.close(4001, "token expired") == [
        CancelCheck(waiting),
        Unsubscribe(live),
        Close(4001, "token expired"),
    ]
    assert session.closed and session.subscriptions == {}
    assert session.close(4003, "again") == []
    assert session.access_granted(waiting) == []


def test_revoke_removes_exactly_that_subscription_with_access_denied() -> None:
    session = Session()
    kept, revoked = request("a"), request("b", group="secret")
    subscribed(session, kept)
    subscribed(session, revoked)
    assert session.revoke(revoked, "access revoked") == [
        Unsubscribe(revoked),
        SendError(ACCESS_DENIED, "access revoked", revoked),
    ]
    assert session.subscriptions == {"a": kept}


def test_revoke_of_a_subscription_left_or_replaced_meanwhile_does_nothing() -> None:
    session = Session()
    old = request("a")
    subscribed(session, old)
    replacement = request("a", group="elsewhere")
    subscribed_again = join(session, replacement)
    assert subscribed_again == [Unsubscribe(old), CheckAccess(replacement)]
    session.access_granted(replacement)
    assert session.revoke(old, "access revoked") == []
    leave(session, replacement)
    assert session.revoke(replacement, "access revoked") == []


# --- page (protocol.md section 5) --------------------------------------------------------------


def page(session: Session, sid: str, *, group: str = "inbox", **extra: object) -> list[Action]:
    data = {"streamName": "todo", "groupId": group, "subscriptionId": sid, **extra}
    return session.receive_text(orjson.dumps({"type": "page", "data": data}).decode())


def test_page_of_a_held_group_subscription_asks_for_that_page() -> None:
    session = Session()
    req = request("s1")
    subscribed(session, req)

    assert page(session, "s1", before="42", limit=20) == [SendPage(req, "42", 20)]
    assert page(session, "s1") == [SendPage(req, None, None)]


@pytest.mark.parametrize(
    ("held", "sid", "group"),
    [
        (None, "s1", "inbox"),  # nothing held
        (request("s1"), "other", "inbox"),  # another id
        (request("s1"), "s1", "elsewhere"),  # the id names another group
        (request("s1", id="t1"), "s1", "inbox"),  # an item subscription
    ],
)
def test_page_of_a_subscription_not_held_is_an_unknown_subscription_error(
    held: SubscriptionRequest | None, sid: str, group: str
) -> None:
    session = Session()
    if held is not None:
        subscribed(session, held)

    actions = page(session, sid, group=group)

    assert len(actions) == 1 and isinstance(actions[0], SendError)
    error = actions[0]
    assert error.code == UNKNOWN_SUBSCRIPTION
    assert error.request is not None
    assert (error.request.stream, error.request.group, error.request.id) == ("todo", group, None)


def test_page_of_a_pending_join_is_refused_too() -> None:
    session = Session()
    join(session, request("s1"))

    [action] = page(session, "s1")

    assert isinstance(action, SendError) and action.code == UNKNOWN_SUBSCRIPTION


def test_pages_for_foreign_subscriptions_spend_the_error_budget() -> None:
    session = Session(max_errors=3)

    page(session, "x")
    page(session, "y")
    actions = page(session, "z")

    assert isinstance(actions[-1], Close) and actions[-1].code == CLOSE_POLICY_VIOLATION


def test_a_join_with_deltas_is_recorded_with_them() -> None:
    session = Session()
    data = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s1", "deltas": True}
    [check] = session.receive_text(orjson.dumps({"type": "join", "data": data}).decode())

    assert isinstance(check, CheckAccess) and check.request.deltas is True
    session.access_granted(check.request)
    assert session.subscriptions["s1"].deltas is True
