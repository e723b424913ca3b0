/**
 * Subscriptions: the client's copy of a group or an item, kept current from the frames the
 * `Stream` routes to them.
 *
 * The API is Motia's (`onEvent`, `offEvent`, `onClose`, `close`, `addChangeListener`,
 * `removeChangeListener`, `getState`, and `listener(message)`), so code written for
 * `@motiadev/stream-client-browser` works unchanged. On top of it:
 *
 * - **Positions** (protocol section 2): every frame carrying `offset` and `epoch` moves the
 *   subscription's position; a frame at or before it (same epoch) is a duplicate and is dropped,
 *   so a change is applied at most once even when the server replays it or sends it to two
 *   subscriptions of one connection. Frames without offsets (Motia's server) fall back to
 *   Motia's timestamp rules.
 * - **Resume** (section 3): the `Stream` re-joins with `since: position`; a `resume` answer keeps
 *   the state and the replayed frames that follow bring it up to date; a sync replaces it.
 *   `onRecover` listeners learn which of the two happened.
 * - **Deltas** (section 4): a `patch` frame's ops are applied to the copy of the item
 *   (`applyOps`, the server's semantics). A patch that does not fit means the copy is wrong: the
 *   subscription asks the stream for a fresh sync instead of guessing.
 * - **Windowed groups** (section 5): `hasMore()` and `loadOlder(limit)` on a group.
 */

import { applyOps, PatchError } from './ops.js'
import type {
  BaseMessage,
  CustomEvent,
  GroupEventMessage,
  ItemEventMessage,
  JoinMessage,
  Listener,
  Position,
  Recovery,
} from './types.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type CustomEventListener = (event: any) => void
type RecoverListener = (recovery: Recovery) => void

/** What a subscription needs from its `Stream` (internal). */
export interface SubscriptionHost {
  /** Leave and join again without `since`: the answer is a full sync. */
  resync(subscription: StreamSubscription<unknown, unknown>): void
  /** Send a page request; resolves with the `page` frame that answers it. */
  requestPage(
    subscription: StreamSubscription<unknown, unknown>,
    before: string,
    limit: number,
  ): Promise<BaseMessage & { event: { type: 'page'; data: unknown[] } }>
}

export abstract class StreamSubscription<TData = unknown, TEventData = unknown> {
  private customEventListeners = new Map<string, CustomEventListener[]>()
  private closeListeners = new Set<() => void>()
  private onChangeListeners = new Set<Listener<TData>>()
  private recoverListeners = new Set<RecoverListener>()
  private state: TData
  readonly sub: JoinMessage

  /** @internal The stream that routes frames here (null: a detached subscription, as in tests). */
  host: SubscriptionHost | null = null
  /** @internal Where this subscription stands (null: nothing with an offset seen yet). */
  position: Position | null = null
  /** @internal A join was sent and its answer (sync or resume) has not arrived. */
  awaitingAnswer = false
  /** @internal The pending join carried `since`. */
  resuming = false
  /** @internal Whether the first sync arrived. */
  synced = false
  private closed = false

  constructor(sub: JoinMessage, state: TData) {
    this.sub = sub
    this.state = state
  }

  /** Handle one frame routed to this subscription. */
  abstract listener(message: TEventData): void

  protected onEventReceived(event: CustomEvent): void {
    const listeners = this.customEventListeners.get(event.type)
    if (listeners) listeners.forEach((listener) => listener(event.data))
  }

  /** Add a custom event listener, called whenever an event of `type` is received. */
  onEvent(type: string, listener: CustomEventListener): void {
    const listeners = this.customEventListeners.get(type) ?? []
    this.customEventListeners.set(type, [...listeners, listener])
  }

  /** Remove a custom event listener. */
  offEvent(type: string, listener: CustomEventListener): void {
    const listeners = this.customEventListeners.get(type) ?? []
    this.customEventListeners.set(
      type,
      listeners.filter((l) => l !== listener),
    )
  }

  /** Called once when the subscription is closed. */
  onClose(listener: () => void): void {
    this.closeListeners.add(listener)
  }

  /** Leave: no more frames, no re-join on reconnect. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.closeListeners.forEach((listener) => listener())
    this.closeListeners.clear()
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed
  }

  /** Add a change listener, called with the new state whenever it changes. */
  addChangeListener(listener: Listener<TData>): void {
    this.onChangeListeners.add(listener)
  }

  /** Remove a change listener. */
  removeChangeListener(listener: Listener<TData>): void {
    this.onChangeListeners.delete(listener)
  }

  /**
   * Called after every (re)join's answer: `{recovered: true, missed}` when the server replayed
   * what was missed, `{recovered: false}` when a sync replaced the state (events of the gap lost).
   */
  onRecover(listener: RecoverListener): void {
    this.recoverListeners.add(listener)
  }

  /** Remove a recover listener. */
  offRecover(listener: RecoverListener): void {
    this.recoverListeners.delete(listener)
  }

  /** The current state. */
  getState(): TData {
    return this.state
  }

  /** The last position seen (offset and epoch), or null. */
  getPosition(): Position | null {
    return this.position
  }

  /** Whether the subscription has had its first sync. */
  get isSynced(): boolean {
    return this.synced
  }

  protected setState(state: TData): void {
    this.state = state
    this.onChangeListeners.forEach((listener) => listener(state))
  }

  /**
   * The common part of every frame: drop duplicates and frames that precede this
   * subscription's answer, record the position. Returns false when the frame must be ignored.
   */
  protected accept(message: BaseMessage, kind: string): boolean {
    const { offset, epoch } = message
    const positioned = typeof offset === 'number' && typeof epoch === 'string'
    if (kind === 'sync' || kind === 'resume') return true
    if (!positioned) return true // Motia's server: no offsets, the timestamp rules apply
    // Before the answer to our join, a frame with an offset was meant for someone else's join
    // (another subscription of this connection being resumed): the answer will cover it.
    if (this.awaitingAnswer && this.position === null) return false
    const position = this.position
    if (position !== null && position.epoch === epoch && offset <= position.offset) return false
    return true
  }

  protected advance(message: BaseMessage): void {
    const { offset, epoch } = message
    if (typeof offset !== 'number' || typeof epoch !== 'string') return
    this.position = { offset, epoch }
    if (this.replay !== null && --this.replay.left <= 0) this.endReplay()
  }

  /** After a resume: how many replayed frames are still to come, and where they bring us. */
  private replay: { left: number; target: Position } | null = null

  /**
   * A `resume` answer: keep the state; the `missed` frames that follow are applied as live ones,
   * then the resume frame's offset is our position (protocol section 3: it may be past the last
   * replayed offset, e.g. for an item subscription, and a later resume starts from there).
   */
  protected resumed(message: BaseMessage, data: { missed?: unknown } | undefined): void {
    const missed = Number(data?.missed) || 0
    const { offset, epoch } = message
    if (typeof offset === 'number' && typeof epoch === 'string') {
      this.replay = { left: missed, target: { offset, epoch } }
      if (missed <= 0) this.endReplay()
    }
    this.answered({ recovered: true, missed })
  }

  /** @internal A sync (or a resync) starts over: no position, no replay under way. */
  resetPosition(): void {
    this.position = null
    this.replay = null
  }

  private endReplay(): void {
    const target = this.replay?.target
    this.replay = null
    const position = this.position
    if (!target || (position !== null && position.epoch === target.epoch && position.offset >= target.offset)) {
      return
    }
    this.position = target
  }

  /** The answer to our join arrived: report how we came back. */
  protected answered(recovery: Recovery | null): void {
    this.awaitingAnswer = false
    const wasResuming = this.resuming
    this.resuming = false
    this.synced = true
    if (recovery === null) {
      if (!wasResuming) return // a first join: nothing to recover
      recovery = { recovered: false, missed: 0 }
    }
    const report = recovery
    this.recoverListeners.forEach((listener) => listener(report))
  }

  /** A patch did not fit the copy: get a fresh sync. */
  protected resyncAfter(error: PatchError): void {
    if (this.host) this.host.resync(this as StreamSubscription<unknown, unknown>)
    else throw error
  }
}

export class StreamGroupSubscription<TData extends { id: string }> extends StreamSubscription<
  TData[],
  GroupEventMessage<TData>
> {
  private lastTimestamp = 0
  private lastTimestampMap = new Map<string, number>()
  private moreCursor: string | null = null

  constructor(
    sub: JoinMessage,
    private sortKey?: keyof TData,
  ) {
    super(sub, [])
  }

  private sort(state: TData[]): TData[] {
    const sortKey = this.sortKey
    if (sortKey) {
      return state.sort((a, b) => {
        const aValue = a[sortKey]
        const bValue = b[sortKey]
        if (aValue && bValue) return String(aValue).localeCompare(String(bValue))
        return 0
      })
    }
    return state
  }

  protected setState(state: TData[]): void {
    super.setState(this.sort(state))
  }

  /** Whether a windowed group has older items than those loaded (protocol section 5). */
  hasMore(): boolean {
    return this.moreCursor !== null
  }

  /**
   * Load the page of `limit` items before the oldest loaded one (a windowed group), add them to
   * the state and return them. Resolves with `[]` when there is nothing older. Rejects when the
   * connection is not open or is lost before the answer.
   */
  async loadOlder(limit = 50): Promise<TData[]> {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`limit must be a positive integer, not ${limit}`)
    }
    const before = this.moreCursor
    if (before === null) return []
    if (!this.host) throw new Error('loadOlder needs a subscription made by a Stream')
    const answer = await this.host.requestPage(this as StreamSubscription<unknown, unknown>, before, limit)
    const page = (Array.isArray(answer.event.data) ? answer.event.data : []) as TData[]
    // The cursor we asked from is still ours (no resync replaced the window meanwhile).
    if (this.moreCursor === before) {
      this.moreCursor = typeof answer.more === 'string' ? answer.more : null
      const known = new Set(this.getState().map((item) => item.id))
      const older = page.filter((item) => !known.has(item.id))
      if (older.length > 0) this.setState([...older, ...this.getState()])
    }
    return page
  }

  listener(message: GroupEventMessage<TData>): void {
    const event = message.event
    if (!this.accept(message, event.type)) return
    switch (event.type) {
      case 'sync': {
        const positioned = typeof message.offset === 'number'
        if (!positioned && message.timestamp < this.lastTimestamp) return
        this.lastTimestampMap = new Map()
        this.lastTimestamp = message.timestamp
        this.moreCursor = typeof message.more === 'string' ? message.more : null
        this.resetPosition()
        this.advance(message)
        const wasAwaiting = this.awaitingAnswer
        this.synced = true // before the change listeners run: they may read isSynced
        this.setState(Array.isArray(event.data) ? [...event.data] : [])
        if (wasAwaiting) this.answered(message.recovered === false ? { recovered: false, missed: 0 } : null)
        return
      }
      case 'resume':
        if (this.awaitingAnswer) this.resumed(message, event.data)
        return
      case 'page':
        return // answers are routed to loadOlder by the Stream
      case 'create': {
        const id = event.data.id
        const state = this.getState()
        if (!state.find((item) => item.id === id)) this.setState([...state, event.data])
        break
      }
      case 'update': {
        const data = event.data
        const current = this.lastTimestampMap.get(data.id)
        if (message.offset === undefined && current && current >= message.timestamp) return
        this.lastTimestamp = message.timestamp
        this.lastTimestampMap.set(data.id, message.timestamp)
        this.setState(this.getState().map((item) => (item.id === data.id ? data : item)))
        break
      }
      case 'patch': {
        const id = message.id
        const state = this.getState()
        const index = id === undefined ? -1 : state.findIndex((item) => item.id === id)
        if (index < 0) break // not in our copy (outside a window): nothing to patch
        let patched: TData
        try {
          patched = applyOps(state[index], event.data?.ops, id!)
        } catch (error) {
          if (error instanceof PatchError) return this.resyncAfter(error)
          throw error
        }
        this.lastTimestamp = message.timestamp
        this.lastTimestampMap.set(id!, message.timestamp)
        const next = [...state]
        next[index] = patched
        this.setState(next)
        break
      }
      case 'delete': {
        const id = event.data.id
        this.lastTimestamp = message.timestamp
        this.lastTimestampMap.set(id, message.timestamp)
        this.setState(this.getState().filter((item) => item.id !== id))
        break
      }
      case 'event':
        this.onEventReceived(event.event)
        break
      default:
        return // an event type of a later protocol: ignored
    }
    this.advance(message)
  }
}

export class StreamItemSubscription<TData extends { id: string }> extends StreamSubscription<
  TData | null,
  ItemEventMessage<TData>
> {
  private lastEventTimestamp = 0

  constructor(sub: JoinMessage) {
    super(sub, null)
  }

  listener(message: ItemEventMessage<TData>): void {
    const event = message.event
    if (!this.accept(message, event.type)) return
    const positioned = typeof message.offset === 'number'
    if (!positioned && event.type !== 'resume' && message.timestamp <= this.lastEventTimestamp) return
    this.lastEventTimestamp = Math.max(this.lastEventTimestamp, message.timestamp)
    switch (event.type) {
      case 'sync': {
        this.resetPosition()
        this.advance(message)
        const wasAwaiting = this.awaitingAnswer
        this.synced = true
        this.setState(event.data ?? null)
        if (wasAwaiting) this.answered(message.recovered === false ? { recovered: false, missed: 0 } : null)
        return
      }
      case 'resume':
        if (this.awaitingAnswer) this.resumed(message, event.data)
        return
      case 'create':
      case 'update':
        this.setState(event.data)
        break
      case 'patch': {
        const current = this.getState()
        if (current === null) break // no copy to patch
        try {
          this.setState(applyOps(current, event.data?.ops, message.id ?? current.id))
        } catch (error) {
          if (error instanceof PatchError) return this.resyncAfter(error)
          throw error
        }
        break
      }
      case 'delete':
        this.setState(null)
        break
      case 'event':
        this.onEventReceived(event.event)
        break
      default:
        return
    }
    this.advance(message)
  }
}
