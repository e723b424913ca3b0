/**
 * `Stream`: one WebSocket connection to a Surge (or Motia) server, its subscriptions, and the
 * connection's life: connect, join, route frames, lose the connection, come back.
 *
 * Motia's `Stream` API (`new Stream(address, {protocols})`, `subscribeGroup`, `subscribeItem`,
 * `close`) with what Motia's clients lack:
 *
 * - **Reconnect forever** with capped, jittered exponential backoff (`reconnect` option), a
 *   connect timeout, an immediate retry when the browser comes back online or the tab becomes
 *   visible, and `status` / `onStatusChange` for a banner (`connecting`, `open`, `reconnecting`,
 *   `offline`, `closed`, with the attempt count). The close code counts, as in Surge's Python
 *   client (docs/protocol.md section 7): after **4003** (access revoked, `streams.revoke`) the
 *   stream stops (status `closed` with an `AccessRevokedError`), as after an upgrade refused
 *   with HTTP 401/403 where the WebSocket implementation reports it (`UpgradeRefusedError`),
 *   unless `retryRefused`; after **4029** (rate limited) the backoff keeps growing even if the
 *   connection was long-lived; after **4001** (token expired) and every other loss it
 *   reconnects, asking a token function again.
 * - **Resume** (docs/protocol.md section 3): every re-join carries `since` (the last offset and
 *   epoch its subscription saw); the server replays what was missed instead of a full sync.
 * - **Deltas** (section 4): joins ask for `deltas: true` and `compact: true`; subscriptions apply
 *   `patch` ops (compact patches are expanded to the verbose form on arrival).
 * - **Windowed groups** (section 5): the `page` request behind `loadOlder()`.
 * - **Auth token**: `authToken` (a string or a function, asked at every connect) sent as the
 *   subprotocol pair `Authorization,<token>` or as `?authToken=`.
 *
 * Frames are routed as Motia's clients do, by the envelope: to the subscriptions of the
 * (stream, group[, id]) room, and item-level changes and events to the group's room as well.
 * Answers to joins (`sync`, `resume`) go to the subscription whose join they answer (a
 * connection's frames are answered in order), page answers to the request's subscription.
 */

import { backoffDelay, backoffOptions, type BackoffOptions } from './backoff.js'
import { AccessRevokedError, CloseCode, UpgradeRefusedError, type StreamRefusal } from './errors.js'
import {
  StreamGroupSubscription,
  StreamItemSubscription,
  StreamSubscription,
  type SubscriptionHost,
} from './subscription.js'
import type { BaseMessage, JoinMessage, StreamStatus } from './types.js'

/** The part of the WebSocket API the client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addEventListener(type: string, listener: (event: any) => void): void
}

/** A WebSocket constructor: `globalThis.WebSocket` in browsers, `ws`'s `WebSocket` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/** A token, or a function giving one at each connect (may be async; undefined: none). */
export type AuthToken = string | (() => string | undefined | null | Promise<string | undefined | null>)

export type StreamOptions = {
  /** WebSocket subprotocols, as Motia's `protocols` option (e.g. `['Authorization', token]`). */
  protocols?: string | string[]
  /** An auth token, sent on every connect as `authTokenIn` says. */
  authToken?: AuthToken
  /** `protocol` (default): the subprotocol pair `Authorization,<token>`; `query`: `?authToken=`. */
  authTokenIn?: 'protocol' | 'query'
  /** Reconnect delays (capped jittered exponential backoff). */
  reconnect?: BackoffOptions
  /**
   * Keep reconnecting after the server revoked access (close 4003) or refused the upgrade
   * (HTTP 401/403): useful with an `authToken` function that fetches new credentials. Default
   * false: the stream stops, its status `closed` with the reason in `error`.
   */
  retryRefused?: boolean
  /** Give up on a connection attempt that has not opened after this long, in ms. Default 10 000. */
  connectTimeoutMs?: number
  /** How long a page request may wait for its answer, in ms. Default 10 000. */
  pageTimeoutMs?: number
  /** Ask for `patch` frames (deltas) on every join. Default true. */
  deltas?: boolean
  /** The WebSocket implementation. Default `globalThis.WebSocket` (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor
}

const OPEN = 1
/**
 * `ws`'s error for an upgrade answered with an HTTP error, when the status is one of a refusal
 * (401: the token; 403: the origin). Browsers (and Node's own WebSocket) do not say why an
 * upgrade failed: there a refusal is a close 1006 before open, like a server that is down or
 * unreachable, and the client can only keep retrying.
 */
const REFUSED_UPGRADE = /^Unexpected server response: (401|403)$/

/** The HTTP status of a refused upgrade, from a WebSocket error event that says it; or null. */
function refusedUpgradeStatus(event: unknown): number | null {
  const message = (event as { message?: unknown } | null)?.message
  const match = typeof message === 'string' ? REFUSED_UPGRADE.exec(message) : null
  return match ? Number(match[1]) : null
}
/**
 * The compact patch form (protocol section 4), `{"timestamp":..,"patch":[streamName, groupId,
 * id, offset, epoch, ops]}` with each op an array (`[type, path, value]`, `[type, path, by]` for
 * increment/decrement, `[type, path]` for remove), as the verbose `patch` frame it stands for.
 * Any other frame is returned as is.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function expandCompactPatch(message: any): any {
  if (typeof message !== 'object' || message === null || !Array.isArray(message.patch)) {
    return message
  }
  if (message.event !== undefined) return message
  const [streamName, groupId, id, offset, epoch, ops] = message.patch
  const expanded: Record<string, unknown> = { timestamp: message.timestamp, streamName, groupId, id }
  if (typeof offset === 'number') expanded.offset = offset
  if (typeof epoch === 'string') expanded.epoch = epoch
  const verbose = Array.isArray(ops)
    ? ops.map((op: unknown) => {
        if (!Array.isArray(op)) return op
        const [type, path, value] = op
        const out: Record<string, unknown> = { type, path }
        if (op.length >= 3) out[type === 'increment' || type === 'decrement' ? 'by' : 'value'] = value
        return out
      })
    : ops
  expanded.event = { type: 'patch', data: { ops: verbose } }
  return expanded
}

/**
 * A batched `resume` (protocol section 3, for joins that asked for the compact form): its
 * `data.replay` entries `[offset, kind, id, payload]` as the frames they stand for, in order
 * (the resume's address, epoch and timestamp; kind `patch` carries compact ops, `event` the
 * event `{type, data}`, the others the whole item). Empty for any other frame.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function replayedFrames(message: any): any[] {
  const replay = message?.event?.type === 'resume' ? message.event.data?.replay : undefined
  if (!Array.isArray(replay)) return []
  const { timestamp, streamName, groupId, epoch } = message
  const frames = []
  for (const entry of replay) {
    if (!Array.isArray(entry) || entry.length !== 4 || typeof entry[0] !== 'number') continue
    const [offset, kind, id, payload] = entry
    if (kind === 'patch') {
      frames.push(expandCompactPatch({ timestamp, patch: [streamName, groupId, id, offset, epoch, payload] }))
      continue
    }
    const frame: Record<string, unknown> = { timestamp, streamName, groupId }
    if (typeof id === 'string') frame.id = id
    frame.offset = offset
    frame.epoch = epoch
    frame.event = kind === 'event' ? { type: 'event', event: payload } : { type: kind, data: payload }
    frames.push(frame)
  }
  return frames
}

const GROUP_VISIBLE = new Set(['create', 'update', 'delete', 'patch', 'event'])

type AnySubscription = StreamSubscription<unknown, unknown>
type PageAnswer = BaseMessage & { event: { type: 'page'; data: unknown[] } }
type PendingPage = {
  kind: 'page'
  subscription: AnySubscription
  resolve: (answer: PageAnswer) => void
  reject: (error: Error) => void
  timer: ReturnType<typeof setTimeout>
}
/** A frame sent on this connection that the server will answer (in order, per connection). */
type Pending = { kind: 'join'; subscription: AnySubscription } | PendingPage

function randomId(): string {
  const cryptoApi = globalThis.crypto
  if (cryptoApi?.randomUUID) {
    try {
      return cryptoApi.randomUUID()
    } catch {
      // randomUUID needs a secure context; getRandomValues does not.
    }
  }
  const bytes = new Uint8Array(16)
  if (cryptoApi?.getRandomValues) cryptoApi.getRandomValues(bytes)
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256)
  bytes[6] = (bytes[6]! & 0x0f) | 0x40
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

function roomName(message: { streamName: string; groupId: string; id?: string }): string {
  // JSON keeps the parts apart whatever characters they hold.
  return JSON.stringify(message.id === undefined ? [message.streamName, message.groupId] : [message.streamName, message.groupId, message.id])
}

function isOnline(): boolean {
  const nav = (globalThis as { navigator?: { onLine?: boolean } }).navigator
  return nav?.onLine !== false
}

export class Stream implements SubscriptionHost {
  private readonly address: string
  private readonly options: StreamOptions
  private readonly backoff: ReturnType<typeof backoffOptions>
  private readonly WebSocketImpl: WebSocketConstructor
  private ws: WebSocketLike | null = null
  private rooms = new Map<string, Set<AnySubscription>>()
  /**
   * Per room, the joins and page requests sent on this connection and not answered yet, in the
   * order sent: the server answers a connection's frames in order and its answers carry no
   * subscriptionId, so an answer (sync, resume, page, or an error event) belongs to the oldest.
   */
  private pending = new Map<string, Pending[]>()
  private statusListeners = new Set<(status: StreamStatus) => void>()
  private currentStatus: StreamStatus
  private failures = 0
  private everOpen = false
  private closed = false
  /** Why the server ended the stream for good (it is closed), or null. */
  private refusal: StreamRefusal | null = null
  /** When the current connection opened (Date.now()), or null while not open. */
  private openedAt: number | null = null
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private connectTimer: ReturnType<typeof setTimeout> | null = null
  private connectGeneration = 0
  private readonly windowListeners: Array<[EventTarget, string, () => void]> = []

  /**
   * Connect to `address` (`ws://host:3000`) at once; subscriptions may be made right away.
   *
   * @throws RangeError for invalid options; Error when no WebSocket implementation exists.
   */
  constructor(address: string, options: StreamOptions = {}) {
    this.address = address
    this.options = options
    this.backoff = backoffOptions(options.reconnect)
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (!impl) {
      throw new Error(
        'no WebSocket implementation: pass options.WebSocket (e.g. the ws package\'s WebSocket)',
      )
    }
    this.WebSocketImpl = impl
    this.currentStatus = { state: 'connecting', attempt: 0, retryAt: null, disconnectedAt: null }
    this.watchBrowser()
    this.connect()
  }

  /** The connection's state now (a new object on every change). */
  get status(): StreamStatus {
    return this.currentStatus
  }

  /** Call `listener` on every status change; returns the function that stops it. */
  onStatusChange(listener: (status: StreamStatus) => void): () => void {
    this.statusListeners.add(listener)
    return () => this.statusListeners.delete(listener)
  }

  /**
   * Subscribe to an item in a stream.
   *
   * @argument streamName - The name of the stream to subscribe to.
   * @argument groupId - The id of the group to subscribe to.
   * @argument id - The id of the item to subscribe to.
   */
  subscribeItem<TData extends { id: string }>(
    streamName: string,
    groupId: string,
    id: string,
  ): StreamItemSubscription<TData> {
    const subscription = new StreamItemSubscription<TData>({
      streamName,
      groupId,
      id,
      subscriptionId: randomId(),
    })
    this.subscribe(subscription as unknown as AnySubscription)
    return subscription
  }

  /**
   * Subscribe to a group in a stream.
   *
   * @argument streamName - The name of the stream to subscribe to.
   * @argument groupId - The id of the group to subscribe to.
   * @argument sortKey - Keep the items sorted by this field (as Motia's client does).
   */
  subscribeGroup<TData extends { id: string }>(
    streamName: string,
    groupId: string,
    sortKey?: keyof TData,
  ): StreamGroupSubscription<TData> {
    const subscription = new StreamGroupSubscription<TData>(
      { streamName, groupId, subscriptionId: randomId() },
      sortKey,
    )
    this.subscribe(subscription as unknown as AnySubscription)
    return subscription
  }

  /** Close the connection for good: no reconnect, every subscription forgotten. */
  close(): void {
    if (this.closed) return
    this.shutDown(new Error('the stream was closed'))
    this.setStatus({ state: 'closed', attempt: 0, retryAt: null, disconnectedAt: Date.now() })
  }

  /**
   * Stop for good: no timers, no window listeners, no socket; pending pages reject with `error`;
   * every subscription is closed (its `onClose` listeners run), as the Python client ends its
   * subscriptions with the stream.
   */
  private shutDown(error: Error): void {
    this.closed = true
    this.clearTimers()
    for (const [target, type, listener] of this.windowListeners) target.removeEventListener(type, listener)
    this.windowListeners.length = 0
    this.failPages(error)
    const rooms = this.rooms
    this.rooms = new Map()
    const ws = this.ws
    this.ws = null
    if (ws) ws.close(1000)
    // After the socket is gone: their leaves are not sent, nothing is left to re-join.
    for (const subscriptions of rooms.values()) for (const subscription of subscriptions) subscription.close()
  }

  /** The server ended the stream (4003, or a refused upgrade) and `retryRefused` is off. */
  private refuse(error: StreamRefusal): void {
    this.refusal = error
    const disconnectedAt = this.currentStatus.disconnectedAt ?? Date.now()
    this.shutDown(error)
    this.setStatus({ state: 'closed', attempt: 0, retryAt: null, disconnectedAt, error })
  }

  // --- SubscriptionHost ---------------------------------------------------------------------

  /** @internal */
  resync(subscription: AnySubscription): void {
    subscription.resetPosition()
    if (!this.isOpen()) return // the next connection joins without since
    this.send({ type: 'leave', data: subscription.sub })
    this.join(subscription)
  }

  /** @internal */
  requestPage(subscription: AnySubscription, before: string, limit: number): Promise<PageAnswer> {
    const room = roomName(subscription.sub)
    if (this.refusal) return Promise.reject(this.refusal)
    if (!this.isOpen() || subscription.awaitingAnswer) {
      return Promise.reject(new Error('not connected: try loadOlder again once the stream is open'))
    }
    if (this.pending.get(room)?.some((entry) => entry.kind === 'page')) {
      return Promise.reject(new Error('a page of this group is already being loaded'))
    }
    return new Promise<PageAnswer>((resolve, reject) => {
      const timeoutMs = this.options.pageTimeoutMs ?? 10_000
      const entry: PendingPage = {
        kind: 'page',
        subscription,
        resolve,
        reject,
        timer: setTimeout(() => {
          // A late answer must not be taken for another request's: start this connection over.
          this.take(room, (candidate) => candidate === entry)
          reject(new Error(`no page answer within ${timeoutMs} ms`))
          if (this.ws) this.dropSocket(4008, 'page timeout')
        }, timeoutMs),
      }
      this.queue(room, entry)
      this.send({
        type: 'page',
        data: { ...subscription.sub, before, limit },
      })
    })
  }

  // --- connection ---------------------------------------------------------------------------

  private isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === OPEN
  }

  private setStatus(status: StreamStatus): void {
    this.currentStatus = status
    this.statusListeners.forEach((listener) => listener(status))
  }

  private watchBrowser(): void {
    const target = globalThis as unknown as Partial<EventTarget>
    if (typeof target.addEventListener !== 'function') return
    const listen = (on: EventTarget, type: string, listener: () => void) => {
      on.addEventListener(type, listener)
      this.windowListeners.push([on, type, listener])
    }
    const win = target as EventTarget
    listen(win, 'online', () => this.retryNow())
    listen(win, 'offline', () => {
      // A socket may take minutes to notice the network is gone: drop it now.
      if (this.ws) this.dropSocket(4000, 'offline')
      else if (this.currentStatus.state !== 'closed') this.setStatus({ ...this.currentStatus, state: 'offline' })
    })
    const doc = (globalThis as { document?: EventTarget & { visibilityState?: string } }).document
    if (doc && typeof doc.addEventListener === 'function') {
      listen(doc, 'visibilitychange', () => {
        if (doc.visibilityState === 'visible') this.retryNow()
      })
    }
  }

  /** Waiting for a retry: make it now (the network or the tab is back). */
  private retryNow(): void {
    if (this.closed || this.ws !== null || this.retryTimer === null) return
    clearTimeout(this.retryTimer)
    this.retryTimer = null
    this.connect()
  }

  private clearTimers(): void {
    for (const timer of [this.retryTimer, this.connectTimer]) {
      if (timer !== null) clearTimeout(timer)
    }
    this.retryTimer = this.connectTimer = null
  }

  private async connect(): Promise<void> {
    const generation = ++this.connectGeneration
    let url = this.address
    let protocols = this.options.protocols
    try {
      const tokenOption = this.options.authToken
      const token = typeof tokenOption === 'function' ? await tokenOption() : tokenOption
      if (this.closed || generation !== this.connectGeneration) return
      if (token) {
        if (this.options.authTokenIn === 'query') {
          url += `${url.includes('?') ? '&' : '?'}authToken=${encodeURIComponent(token)}`
        } else {
          const given = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols]
          protocols = ['Authorization', token, ...given]
        }
      }
      const ws = new this.WebSocketImpl(url, protocols)
      this.ws = ws
      ws.addEventListener('open', () => this.onOpen(ws))
      ws.addEventListener('message', (event: { data: unknown }) => {
        if (this.ws === ws) this.onMessage(typeof event.data === 'string' ? event.data : String(event.data))
      })
      let refusedWith: number | null = null
      // A close follows an error (and without a listener Node's ws throws). A refused upgrade
      // is told apart only where the error says so (REFUSED_UPGRADE: the ws package).
      ws.addEventListener('error', (event: unknown) => {
        refusedWith = refusedUpgradeStatus(event)
      })
      ws.addEventListener('close', (event: { code?: number; reason?: unknown }) => {
        const reason = typeof event?.reason === 'string' ? event.reason : ''
        this.onClose(ws, event?.code, reason, refusedWith)
      })
      const timeoutMs = this.options.connectTimeoutMs ?? 10_000
      this.connectTimer = setTimeout(() => {
        this.connectTimer = null
        if (this.ws === ws && ws.readyState !== OPEN) this.dropSocket(4008, 'connect timeout')
      }, timeoutMs)
    } catch {
      // A bad token for a subprotocol, a throwing token function, an invalid URL: a failed
      // attempt like any other (the backoff keeps it from spinning).
      if (!this.closed && generation === this.connectGeneration) this.scheduleRetry()
    }
  }

  /** Forget the socket now and go through the close path (its own close event is ignored). */
  private dropSocket(code: number, reason: string): void {
    const ws = this.ws
    if (!ws) return
    try {
      ws.close(code, reason)
    } catch {
      // already closing
    }
    this.onClose(ws, code)
  }

  private onOpen(ws: WebSocketLike): void {
    if (this.ws !== ws || this.closed) return
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    this.connectTimer = null
    this.everOpen = true
    this.openedAt = Date.now()
    this.setStatus({ state: 'open', attempt: 0, retryAt: null, disconnectedAt: null })
    for (const subscriptions of this.rooms.values()) {
      for (const subscription of subscriptions) this.join(subscription)
    }
  }

  /**
   * The socket closed (`code` and `reason` as received; `refusedWith`: the HTTP status of a
   * refused upgrade, when known). Reconnects, except after 4003 or a refusal without
   * `retryRefused`, as Surge's Python client does.
   */
  private onClose(ws: WebSocketLike, code: number | undefined, reason = '', refusedWith: number | null = null): void {
    if (this.ws !== ws) return // an old socket, already dropped
    this.ws = null
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    this.connectTimer = null
    const openedAt = this.openedAt
    this.openedAt = null
    for (const subscriptions of this.rooms.values()) {
      for (const subscription of subscriptions) subscription.awaitingAnswer = false
    }
    if (this.closed) return
    if (this.options.retryRefused !== true) {
      // 4003: do not come back with the same credentials; a refused upgrade: they are refused.
      if (code === CloseCode.ACCESS_REVOKED) return this.refuse(new AccessRevokedError(code, reason))
      if (refusedWith !== null) return this.refuse(new UpgradeRefusedError(refusedWith))
    }
    this.failPages(new Error('the connection was lost before the page arrived'))
    // A connection that stayed open long enough starts the backoff over, unless the server
    // closed it for going over its rate limits (4029): a client that keeps being limited waits
    // longer each time.
    const stable = openedAt !== null && Date.now() - openedAt >= this.backoff.stableAfterMs
    if (stable && code !== CloseCode.RATE_LIMITED) this.failures = 0
    this.scheduleRetry()
  }

  private scheduleRetry(): void {
    this.failures += 1
    const delay = backoffDelay(this.failures, this.backoff)
    const previous = this.currentStatus
    const state = !isOnline() ? 'offline' : this.everOpen ? 'reconnecting' : 'connecting'
    this.setStatus({
      state,
      attempt: previous.state === 'open' ? 1 : previous.attempt + 1,
      retryAt: Date.now() + delay,
      disconnectedAt: previous.disconnectedAt ?? Date.now(),
    })
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.connect()
    }, delay)
  }

  /** Forget every pending request; page requests are rejected with `error`. */
  private failPages(error: Error): void {
    const pending = this.pending
    this.pending = new Map()
    for (const entries of pending.values()) {
      for (const entry of entries) {
        if (entry.kind !== 'page') continue
        clearTimeout(entry.timer)
        entry.reject(error)
      }
    }
  }

  private queue(room: string, entry: Pending): void {
    let entries = this.pending.get(room)
    if (!entries) this.pending.set(room, (entries = []))
    entries.push(entry)
  }

  /** Remove and return the oldest pending request of `room` that `match` accepts. */
  private take(room: string, match: (entry: Pending) => boolean): Pending | undefined {
    const entries = this.pending.get(room)
    if (!entries) return undefined
    const index = entries.findIndex(match)
    if (index < 0) return undefined
    const [entry] = entries.splice(index, 1)
    if (entries.length === 0) this.pending.delete(room)
    return entry
  }

  private send(frame: unknown): void {
    if (this.isOpen()) this.ws!.send(JSON.stringify(frame))
  }

  // --- subscriptions ------------------------------------------------------------------------

  private subscribe(subscription: AnySubscription): void {
    if (this.closed) throw this.refusal ?? new Error('the stream is closed')
    subscription.host = this
    const room = roomName(subscription.sub)
    let subscriptions = this.rooms.get(room)
    if (!subscriptions) this.rooms.set(room, (subscriptions = new Set()))
    subscriptions.add(subscription)
    this.join(subscription)
    subscription.onClose(() => {
      const current = this.rooms.get(room)
      current?.delete(subscription)
      if (current?.size === 0) this.rooms.delete(room)
      // An answer to its join may still come: it stays in the queue so it is not taken for
      // another subscription's answer, and is dropped when it arrives.
      this.send({ type: 'leave', data: subscription.sub })
    })
  }

  private join(subscription: AnySubscription): void {
    if (!this.isOpen()) return
    const data: JoinMessage & { since?: unknown; deltas?: boolean; compact?: boolean } = {
      ...subscription.sub,
    }
    if (subscription.position) data.since = { ...subscription.position }
    if (this.options.deltas !== false) {
      data.deltas = true
      data.compact = true // this client reads the compact patch form too
    }
    this.queue(roomName(subscription.sub), { kind: 'join', subscription })
    subscription.awaitingAnswer = true
    subscription.resuming = subscription.position !== null
    this.send({ type: 'join', data })
  }

  private deliver(subscription: AnySubscription, message: BaseMessage): void {
    if (subscription.isClosed) return
    try {
      subscription.listener(message)
    } catch (error) {
      // One listener's bug must not stop the frames of the others; surface it asynchronously.
      setTimeout(() => {
        throw error
      }, 0)
    }
  }

  private onMessage(raw: string): void {
    let message: BaseMessage & { event?: { type?: unknown; event?: { type?: unknown } } }
    try {
      message = expandCompactPatch(JSON.parse(raw))
    } catch {
      return // not JSON: not a frame of this protocol
    }
    this.route(message)
    // A batched resume: the missed messages it carries, in order, as live frames.
    for (const replayed of replayedFrames(message)) this.route(replayed)
  }

  private route(message: BaseMessage & { event?: { type?: unknown; event?: { type?: unknown } } }): void {
    if (
      typeof message !== 'object' ||
      message === null ||
      typeof message.streamName !== 'string' ||
      typeof message.groupId !== 'string' ||
      typeof message.event !== 'object' ||
      message.event === null
    ) {
      return
    }
    const type = message.event.type
    const room = roomName(message)
    const subscriptions = this.rooms.get(room)

    if (type === 'sync' || type === 'resume') {
      const answered = this.take(room, (entry) => entry.kind === 'join')
      if (answered) this.deliver(answered.subscription, message)
      else if (type === 'sync') subscriptions?.forEach((s) => this.deliver(s, message)) // as Motia's
      return
    }
    if (type === 'page') {
      const answered = this.take(room, (entry) => entry.kind === 'page')
      if (answered?.kind === 'page') {
        clearTimeout(answered.timer)
        answered.resolve(message as PageAnswer)
      }
      return
    }
    const errorEvent = type === 'event' ? message.event.event : undefined
    if (errorEvent?.type === 'error' && message.offset === undefined) {
      // A refused join (STREAM_ACCESS_DENIED...) or page (UNKNOWN_SUBSCRIPTION, INVALID_MESSAGE...):
      // the answer to the oldest pending request of the room.
      const refused = this.take(room, () => true)
      if (refused?.kind === 'join') {
        refused.subscription.awaitingAnswer = false
        this.deliver(refused.subscription, message)
        return
      }
      if (refused?.kind === 'page') {
        clearTimeout(refused.timer)
        const data = (errorEvent as { data?: { code?: unknown; message?: unknown } }).data
        const error = new Error(`page refused: ${String(data?.code)}: ${String(data?.message)}`)
        refused.reject(Object.assign(error, { code: data?.code }))
        return
      }
    }
    subscriptions?.forEach((s) => this.deliver(s, message))
    if (message.id !== undefined && typeof type === 'string' && GROUP_VISIBLE.has(type)) {
      this.rooms
        .get(roomName({ streamName: message.streamName, groupId: message.groupId }))
        ?.forEach((s) => this.deliver(s, message))
    }
  }
}
