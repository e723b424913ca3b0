/**
 * Wire types of Surge's stream protocol (docs/protocol.md): Motia's frames (section 1) plus
 * Surge's envelope keys (`offset`, `epoch`, `recovered`, `more`) and event types (`resume`,
 * `patch`, `page`). The names Motia's clients export are kept, so code typed against
 * `@motiadev/stream-client-browser` compiles unchanged.
 */

import type { StreamRefusal } from './errors.js'
import type { UpdateOp } from './ops.js'

/** The envelope of every server frame. */
export type BaseMessage = {
  streamName: string
  groupId: string
  /** Present for item-level messages, absent for group-level ones. */
  id?: string
  timestamp: number
  /** Position of the message in its (stream, group) (protocol section 2). */
  offset?: number
  /** Names the history the offsets belong to. */
  epoch?: string
  /** On a sync answering a join that carried `since`: the history could not be replayed. */
  recovered?: boolean
  /** On a windowed group's sync or page: the cursor of the next older page (section 5). */
  more?: string
}

/** The data of a join or leave (the subscription's identity). */
export type JoinMessage = Omit<BaseMessage, 'timestamp' | 'offset' | 'epoch' | 'recovered' | 'more'> & {
  subscriptionId: string
}

/** A `send()` event (or an error event) inside an `event` frame. */
export type CustomEvent = {
  type: string
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any
}

/** The events every subscription can receive. */
export type StreamEvent<TData extends { id: string }> =
  | { type: 'create'; data: TData }
  | { type: 'update'; data: TData }
  | { type: 'delete'; data: TData }
  | { type: 'event'; event: CustomEvent }
  | { type: 'patch'; data: { ops: UpdateOp[] } }
  | { type: 'resume'; data: { since: number; missed: number; replay?: unknown[][] } }

export type ItemStreamEvent<TData extends { id: string }> =
  | StreamEvent<TData>
  | { type: 'sync'; data: TData | null }

export type GroupStreamEvent<TData extends { id: string }> =
  | StreamEvent<TData>
  | { type: 'sync'; data: TData[] }
  | { type: 'page'; data: TData[] }

export type ItemEventMessage<TData extends { id: string }> = BaseMessage & {
  event: ItemStreamEvent<TData>
}

export type GroupEventMessage<TData extends { id: string }> = BaseMessage & {
  event: GroupStreamEvent<TData>
}

/** A client frame of the base protocol. */
export type Message = {
  type: 'join' | 'leave'
  data: JoinMessage
}

export type Listener<TData> = (state: TData | null) => void
export type CustomEventListener<TData> = (event: TData) => void

/** Where a subscription stands in its group's history: the last offset seen, and its epoch. */
export type Position = { offset: number; epoch: string }

/**
 * How a subscription came back after a reconnect (or a resync): `recovered: true` means the
 * server replayed exactly what was missed (`missed` messages, events included); `false` means a
 * fresh sync replaced the state and `send` events of the gap were lost.
 */
export type Recovery = { recovered: boolean; missed: number }

/**
 * The connection's state, for a banner:
 * - `connecting`: not open yet and never was (first load);
 * - `open`: connected, subscriptions joined;
 * - `reconnecting`: the connection was lost and the next attempt is scheduled (`retryAt`);
 * - `offline`: the browser reports no network; the next attempt comes when it is back (or at
 *   the capped backoff);
 * - `closed`: nothing more happens: `stream.close()` was called, or the server ended the stream
 *   for good (`error` says how: access revoked with close 4003, or the upgrade refused with
 *   HTTP 401/403 where the WebSocket implementation reports it) and `retryRefused` is off.
 */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed'

/** A snapshot of the connection (a new object on every change). */
export type StreamStatus = {
  readonly state: ConnectionState
  /** Failed attempts since the connection was last open (0 while open). */
  readonly attempt: number
  /** When the next attempt is due (ms since the epoch), while waiting for one. */
  readonly retryAt: number | null
  /** When the connection was lost (ms since the epoch); null while open or before the first. */
  readonly disconnectedAt: number | null
  /**
   * On a `closed` status, when the server ended the stream rather than `stream.close()`: an
   * `AccessRevokedError` (`code` 4003, `reason`) or an `UpgradeRefusedError` (`status`).
   */
  readonly error?: StreamRefusal
}
