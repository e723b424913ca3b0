"""The per-connection protocol state machine (Sans-I/O).

The WebSocket endpoint feeds every received frame to ``Session.receive_text`` (or
``receive_binary``) and performs the returned actions in order; the results of asynchronous work
(the access check) come back through ``access_granted``/``access_denied``, which return further
actions. The session never touches sockets, clocks or storage, so each rule is a unit test.

Rules (wire-protocol.md):
- join -> ``CheckAccess``; granted -> the subscription is recorded and ``Subscribe`` asks the
  endpoint
  to register it and send the sync; denied -> ``SendError(STREAM_ACCESS_DENIED)``, nothing recorded.
- A join reusing a live subscriptionId replaces that subscription (``Unsubscribe`` first).
- leave -> ``Unsubscribe`` of this connection's subscription with that subscriptionId; unknown ids
  are ignored. Subscriptions are keyed by subscriptionId *within this session only*, so one
  connection can never leave or replace another connection's subscription.
- Unknown ``type``: ignored. Malformed frames: ``SendError(INVALID_MESSAGE)``; after
  ``max_errors`` of them the connection is closed with 1008. Binary frames: close 1003. Frames
  longer than ``max_frame_bytes``: close 1009.
- At most ``max_subscriptions`` live (or pending) subscriptions: further joins get
  ``SendError(TOO_MANY_SUBSCRIPTIONS)``.
- Access checks may run concurrently, yet frames keep their order: a leave (or a new join with the
  same subscriptionId, or a close) cancels a join still waiting for its check (``CancelCheck``:
  the endpoint stops the check), and a late answer is ignored. The endpoint keeps reading frames
  while checks run.
- ``subscriptions`` is the one record of the connection's subscriptions (the hub only routes).
- page (protocol.md section 5) -> ``SendPage`` for a group subscription this connection holds
  (so its access check passed); any other -> ``SendError(UNKNOWN_SUBSCRIPTION)`` addressed with
  the page's stream and group, counted as a client mistake like a malformed frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from surge.errors import ProtocolError
from surge.protocol.codec import decode_client_message
from surge.protocol.codes import (
    ACCESS_DENIED,
    INVALID_MESSAGE,
    TOO_MANY_SUBSCRIPTIONS,
    UNKNOWN_SUBSCRIPTION,
    CloseCode,
)
from surge.protocol.messages import Join, Leave, Page, SubscriptionRequest

__all__ = [
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "Action",
    "CancelCheck",
    "CheckAccess",
    "Close",
    "SendError",
    "SendPage",
    "Session",
    "Subscribe",
    "Unsubscribe",
]

# Aliases of ``CloseCode`` members, kept for existing imports.
CLOSE_UNSUPPORTED_DATA = CloseCode.UNSUPPORTED_DATA
CLOSE_POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
CLOSE_MESSAGE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
CLOSE_TRY_AGAIN_LATER = CloseCode.TRY_AGAIN_LATER


@dataclass(frozen=True, slots=True)
class CheckAccess:
    """Decide whether this connection may join; answer with access_granted/access_denied."""

    request: SubscriptionRequest


@dataclass(frozen=True, slots=True)
class CancelCheck:
    """Stop the access check of ``request``: a leave, a newer join or a close made it moot."""

    request: SubscriptionRequest


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Register the subscription with the hub and send its sync."""

    request: SubscriptionRequest


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Remove the subscription from the hub."""

    request: SubscriptionRequest


@dataclass(frozen=True, slots=True)
class SendPage:
    """Read the page of the held group subscription ``request`` and send it."""

    request: SubscriptionRequest
    before: str | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class SendError:
    """Send an error event, addressed like the offending join when known."""

    code: str
    message: str
    request: SubscriptionRequest | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


Action = CheckAccess | CancelCheck | Subscribe | Unsubscribe | SendPage | SendError | Close


class Session:
    """Protocol state of one connection: its subscriptions and its error budget."""

    def __init__(
        self,
        *,
        max_subscriptions: int = 256,
        max_errors: int = 16,
        max_frame_bytes: int = 64 * 1024,
    ) -> None:
        self.max_subscriptions = max_subscriptions
        self.max_errors = max_errors
        self.max_frame_bytes = max_frame_bytes
        self.subscriptions: dict[str, SubscriptionRequest] = {}
        # subscriptionId -> the join awaiting its access check; a later answer for another
        # request (superseded or left meanwhile) is stale and ignored.
        self._pending: dict[str, SubscriptionRequest] = {}
        self._errors = 0
        self.closed = False

    def receive_text(self, text: str) -> list[Action]:
        """Handle one text frame."""
        if self.closed:
            return []
        # A character is 1-4 UTF-8 bytes: only encode when the length alone does not decide.
        # surrogatepass: a lone surrogate must reach the codec (ProtocolError), not raise here.
        if len(text) > self.max_frame_bytes or (
            len(text) * 4 > self.max_frame_bytes
            and len(text.encode("utf-8", "surrogatepass")) > self.max_frame_bytes
        ):
            return self._close(CLOSE_MESSAGE_TOO_BIG, f"frame over {self.max_frame_bytes} bytes")
        try:
            message = decode_client_message(text)
        except ProtocolError as exc:
            return self._protocol_error(str(exc))
        if message is None:
            return []
        if isinstance(message, Join):
            return self._join(message.request)
        if isinstance(message, Page):
            return self._page(message)
        return self._leave(message)

    def receive_binary(self) -> list[Action]:
        """Handle a binary frame: the protocol is text only."""
        if self.closed:
            return []
        return self._close(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported")

    def access_granted(self, request: SubscriptionRequest) -> list[Action]:
        """Record a subscription whose access check passed."""
        if not self._settle(request) or self.closed:
            return []
        self.subscriptions[request.subscription_id] = request
        return [Subscribe(request)]

    def access_denied(
        self, request: SubscriptionRequest, reason: str, code: str = ACCESS_DENIED
    ) -> list[Action]:
        """Refuse a join: the client gets ``code`` (STREAM_ACCESS_DENIED) and no subscription."""
        if not self._settle(request) or self.closed:
            return []
        return [SendError(code, reason, request)]

    def revoke(self, request: SubscriptionRequest, reason: str) -> list[Action]:
        """End a live subscription the server no longer allows: STREAM_ACCESS_DENIED for it.

        Nothing happens when ``request`` is no longer this session's subscription (the client
        left or replaced it meanwhile).
        """
        if self.closed or self.subscriptions.get(request.subscription_id) != request:
            return []
        del self.subscriptions[request.subscription_id]
        return [Unsubscribe(request), SendError(ACCESS_DENIED, reason, request)]

    def close(self, code: int, reason: str) -> list[Action]:
        """Close the connection from the server's side (rate limits, token expiry, revocation)."""
        if self.closed:
            return []
        return self._close(code, reason)

    def forget(self, request: SubscriptionRequest) -> None:
        """Drop a recorded subscription that could not be served (e.g. its sync failed)."""
        if self.subscriptions.get(request.subscription_id) == request:
            del self.subscriptions[request.subscription_id]

    def _join(self, request: SubscriptionRequest) -> list[Action]:
        actions: list[Action] = []
        previous = self.subscriptions.pop(request.subscription_id, None)
        if previous is not None:
            actions.append(Unsubscribe(previous))
        elif request.subscription_id in self._pending:
            # Replaces a join still being checked: the count does not grow.
            actions.append(CancelCheck(self._pending[request.subscription_id]))
        elif len(self.subscriptions) + len(self._pending) >= self.max_subscriptions:
            return [
                SendError(
                    TOO_MANY_SUBSCRIPTIONS,
                    f"at most {self.max_subscriptions} subscriptions per connection",
                    request,
                )
            ]
        self._pending[request.subscription_id] = request
        actions.append(CheckAccess(request))
        return actions

    def _settle(self, request: SubscriptionRequest) -> bool:
        """End the wait of ``request``; False when it was cancelled or superseded meanwhile."""
        if self._pending.get(request.subscription_id) != request:
            return False
        del self._pending[request.subscription_id]
        return True

    def _leave(self, message: Leave) -> list[Action]:
        # A leave also cancels a join whose access check has not answered yet.
        pending = self._pending.pop(message.request.subscription_id, None)
        if pending is not None:
            return [CancelCheck(pending)]
        current = self.subscriptions.pop(message.request.subscription_id, None)
        if current is None:
            return []
        return [Unsubscribe(current)]

    def _page(self, page: Page) -> list[Action]:
        held = self.subscriptions.get(page.subscription_id)
        if held is None or held.is_item or (held.stream, held.group) != (page.stream, page.group):
            reason = (
                f"no group subscription {page.subscription_id!r} of "
                f"{page.stream}/{page.group} on this connection"
            )
            address = SubscriptionRequest(page.stream, page.group, None, page.subscription_id)
            return self._protocol_error(reason, UNKNOWN_SUBSCRIPTION, address)
        return [SendPage(held, page.before, page.limit)]

    def _protocol_error(
        self,
        reason: str,
        code: str = INVALID_MESSAGE,
        request: SubscriptionRequest | None = None,
    ) -> list[Action]:
        self._errors += 1
        if self._errors >= self.max_errors:
            return [
                SendError(code, reason, request),
                *self._close(CLOSE_POLICY_VIOLATION, "too many invalid messages"),
            ]
        return [SendError(code, reason, request)]

    def _close(self, code: int, reason: str) -> list[Action]:
        self.closed = True
        actions: list[Action] = [CancelCheck(r) for r in self._pending.values()]
        actions.extend(Unsubscribe(r) for r in self.subscriptions.values())
        self._pending.clear()
        self.subscriptions.clear()
        actions.append(Close(code, reason))
        return actions
