/**
 * @surge/stream-client: Surge's stream client, the API of `@motiadev/stream-client-browser`
 * (switching is one import) plus resume from offsets, deltas, windowed groups, reconnect forever
 * and a connection status. React hooks: `@surge/stream-client/react`.
 */

export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js'
export { AccessRevokedError, CloseCode, UpgradeRefusedError, type StreamRefusal } from './errors.js'
export { applyOps, PatchError, type UpdateOp } from './ops.js'
export {
  Stream,
  type StreamOptions as BrowserStreamOptions,
  type AuthToken,
  type StreamOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from './stream.js'
export { StreamGroupSubscription, StreamItemSubscription, StreamSubscription } from './subscription.js'
export type {
  BaseMessage,
  ConnectionState,
  CustomEvent,
  CustomEventListener,
  GroupEventMessage,
  GroupStreamEvent,
  ItemEventMessage,
  ItemStreamEvent,
  JoinMessage,
  Listener,
  Message,
  Position,
  Recovery,
  StreamEvent,
  StreamStatus,
} from './types.js'
