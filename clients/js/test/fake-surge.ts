/**
 * A small in-test stream server speaking docs/protocol.md's frames over real WebSockets (`ws`
 * on 127.0.0.1, port 0): groups of items, offsets and an epoch, a bounded history with resume,
 * deltas, windowed syncs and pages, auth by token. The client's unit tests drive it; the real
 * Surge server is exercised by the Chromium e2e test (tests/e2e/test_todo_offline_browser.py).
 *
 * It records every client frame (`received`) and every upgrade (`upgrades`) so tests can assert
 * on the wire, and can drop every connection and refuse new ones (`stop`) then come back on
 * the same port (`start`), close every connection with a close code (`closeAll`: 4003 as
 * `streams.revoke` does, 4029, 4001...), or every new one as soon as it opens (`closeOnOpen`).
 */

import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { applyOps, type UpdateOp } from '../src/ops.js'

type Item = { id: string; [key: string]: unknown }
type JoinData = {
  streamName: string
  groupId: string
  id?: string
  subscriptionId: string
  since?: { offset: number; epoch: string }
  deltas?: boolean
}
type Entry =
  | { offset: number; kind: 'create' | 'update' | 'delete'; id: string; item: Item; ops?: UpdateOp[] }
  | { offset: number; kind: 'event'; id?: string; event: { type: string; data: unknown } }

type Connection = { socket: WebSocket; subs: JoinData[]; lastTimestamp: number }

export type FakeOptions = {
  /** Refuse upgrades whose token is not this (checked in the subprotocol or ?authToken=). */
  token?: string
  /** The HTTP status of a refused upgrade. Default 401. */
  refusal?: number
  /** Answer group joins with the newest N items and a `more` cursor (protocol section 5). */
  syncLimit?: number
  /** How many messages per group the history keeps. */
  historySize?: number
  /** Refuse joins of these group ids with STREAM_ACCESS_DENIED. */
  deniedGroups?: string[]
  /** Answer every page request with the error event UNKNOWN_SUBSCRIPTION. */
  refusePages?: boolean
  /** Never answer page requests (they stay pending). */
  ignorePages?: boolean
}

const key = (streamName: string, groupId: string) => JSON.stringify([streamName, groupId])

export class FakeSurge {
  port = 0
  epoch = 'epoch-1'
  received: Array<{ type: string; data: Record<string, unknown> }> = []
  upgrades: Array<{ url: string; protocols: string[] }> = []
  /** Close every connection with this code (and reason) as soon as it is open. */
  closeOnOpen: { code: number; reason?: string } | null = null
  private server: WebSocketServer | null = null
  private connections = new Set<Connection>()
  private groups = new Map<string, Map<string, Item>>()
  private history = new Map<string, Entry[]>()
  private nextOffset = 1

  constructor(readonly options: FakeOptions = {}) {}

  static async create(options: FakeOptions = {}): Promise<FakeSurge> {
    const fake = new FakeSurge(options)
    await fake.start()
    return fake
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`
  }

  get connectionCount(): number {
    return this.connections.size
  }

  /** Subscriptions held now, over every connection. */
  get subscriptionCount(): number {
    let count = 0
    for (const connection of this.connections) count += connection.subs.length
    return count
  }

  /** Listen (again, on the same port after `stop`). */
  async start(): Promise<void> {
    const server = new WebSocketServer({
      host: '127.0.0.1',
      port: this.port,
      handleProtocols: (protocols) => (protocols.has('Authorization') ? 'Authorization' : false),
      verifyClient: (info, done) => {
        const url = new URL(info.req.url ?? '/', 'http://x')
        const header = info.req.headers['sec-websocket-protocol']
        const protocols = typeof header === 'string' ? header.split(',').map((p) => p.trim()) : []
        this.upgrades.push({ url: info.req.url ?? '/', protocols })
        const wanted = this.options.token
        if (wanted === undefined) return done(true)
        const index = protocols.indexOf('Authorization')
        const given = index >= 0 ? protocols[index + 1] : url.searchParams.get('authToken')
        done(given === wanted, this.options.refusal ?? 401)
      },
    })
    await once(server, 'listening')
    this.port = (server.address() as AddressInfo).port
    this.server = server
    server.on('connection', (socket) => {
      const connection: Connection = { socket, subs: [], lastTimestamp: 0 }
      this.connections.add(connection)
      socket.on('close', () => this.connections.delete(connection))
      socket.on('message', (raw) => this.onFrame(connection, String(raw)))
      if (this.closeOnOpen) socket.close(this.closeOnOpen.code, this.closeOnOpen.reason)
    })
  }

  /** Close every connection with `code` (a close frame, as the server's own closes), keep listening. */
  closeAll(code: number, reason = ''): void {
    for (const connection of this.connections) connection.socket.close(code, reason)
  }

  /** Drop every connection without a close frame (the client sees 1006), keep listening. */
  dropAll(): void {
    for (const connection of this.connections) connection.socket.terminate()
  }

  /** Drop every connection (no close handshake, as a crash) and stop listening. */
  async stop(): Promise<void> {
    for (const connection of this.connections) connection.socket.terminate()
    this.connections.clear()
    const server = this.server
    this.server = null
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Forget the history (a reset store): offsets given before are no longer valid. */
  resetHistory(epoch: string): void {
    this.epoch = epoch
    this.history.clear()
  }

  items(streamName: string, groupId: string): Item[] {
    return [...(this.groups.get(key(streamName, groupId))?.values() ?? [])]
  }

  set(streamName: string, groupId: string, id: string, data: Record<string, unknown>): Item {
    const group = this.group(streamName, groupId)
    const kind = group.has(id) ? 'update' : 'create'
    const item: Item = { ...data, id }
    group.set(id, item)
    this.publish(streamName, groupId, { offset: this.nextOffset++, kind, id, item })
    return item
  }

  update(streamName: string, groupId: string, id: string, ops: UpdateOp[]): Item {
    const group = this.group(streamName, groupId)
    const old = group.get(id) ?? null
    const item = applyOps(old, ops, id)
    group.set(id, item)
    const kind = old === null ? 'create' : 'update'
    this.publish(streamName, groupId, { offset: this.nextOffset++, kind, id, item, ops: old ? ops : undefined })
    return item
  }

  delete(streamName: string, groupId: string, id: string): void {
    const group = this.group(streamName, groupId)
    const item = group.get(id)
    if (!item) return
    group.delete(id)
    this.publish(streamName, groupId, { offset: this.nextOffset++, kind: 'delete', id, item })
  }

  send(streamName: string, groupId: string, id: string | undefined, event: { type: string; data: unknown }): void {
    this.publish(streamName, groupId, { offset: this.nextOffset++, kind: 'event', id, event })
  }

  /** Send a raw frame to every connection (for malformed-input tests). */
  sendRaw(text: string): void {
    for (const connection of this.connections) connection.socket.send(text)
  }

  /** Client frames of `type` received so far. */
  framesOf(type: string): Array<Record<string, unknown>> {
    return this.received.filter((frame) => frame.type === type).map((frame) => frame.data)
  }

  private group(streamName: string, groupId: string): Map<string, Item> {
    const name = key(streamName, groupId)
    let group = this.groups.get(name)
    if (!group) this.groups.set(name, (group = new Map()))
    return group
  }

  private publish(streamName: string, groupId: string, entry: Entry): void {
    const name = key(streamName, groupId)
    let entries = this.history.get(name)
    if (!entries) this.history.set(name, (entries = []))
    entries.push(entry)
    const size = this.options.historySize ?? 100
    if (entries.length > size) entries.splice(0, entries.length - size)
    for (const connection of this.connections) {
      const matching = connection.subs.filter((sub) => this.matches(sub, streamName, groupId, entry))
      if (matching.length === 0) continue
      // One frame per connection per message, as the real server may do.
      const deltas = matching.every((sub) => sub.deltas === true)
      this.deliver(connection, streamName, groupId, entry, deltas)
    }
  }

  private matches(sub: JoinData, streamName: string, groupId: string, entry: Entry): boolean {
    if (sub.streamName !== streamName || sub.groupId !== groupId) return false
    if (sub.id === undefined) return true
    return entry.id === sub.id
  }

  private envelope(connection: Connection, streamName: string, groupId: string, id: string | undefined, extra: object): string {
    connection.lastTimestamp = Math.max(Date.now(), connection.lastTimestamp + 1)
    const frame: Record<string, unknown> = { timestamp: connection.lastTimestamp, streamName, groupId }
    if (id !== undefined) frame.id = id
    return JSON.stringify({ ...frame, ...extra })
  }

  private deliver(connection: Connection, streamName: string, groupId: string, entry: Entry, deltas: boolean): void {
    const position = { offset: entry.offset, epoch: this.epoch }
    let event: unknown
    if (entry.kind === 'event') event = { type: 'event', event: entry.event }
    else if (entry.kind === 'update' && entry.ops && deltas) event = { type: 'patch', data: { ops: entry.ops } }
    else event = { type: entry.kind, data: entry.item }
    connection.socket.send(this.envelope(connection, streamName, groupId, entry.id, { ...position, event }))
  }

  private onFrame(connection: Connection, text: string): void {
    let frame: { type: string; data: Record<string, unknown> }
    try {
      frame = JSON.parse(text)
    } catch {
      return
    }
    this.received.push(frame)
    const data = frame.data as unknown as JoinData
    if (frame.type === 'join') this.onJoin(connection, data)
    else if (frame.type === 'leave') {
      connection.subs = connection.subs.filter((sub) => sub.subscriptionId !== data.subscriptionId)
    } else if (frame.type === 'page') this.onPage(connection, frame.data)
  }

  private onJoin(connection: Connection, sub: JoinData): void {
    const { streamName, groupId, id } = sub
    if (this.options.deniedGroups?.includes(groupId)) {
      const error = { type: 'event', event: { type: 'error', data: { code: 'STREAM_ACCESS_DENIED', message: 'denied' } } }
      connection.socket.send(this.envelope(connection, streamName, groupId, id, { event: error }))
      return
    }
    connection.subs.push(sub)
    const name = key(streamName, groupId)
    const entries = this.history.get(name) ?? []
    const newest = this.nextOffset - 1
    const since = sub.since
    if (since && since.epoch === this.epoch) {
      const oldestKept = entries.length > 0 ? entries[0]!.offset : this.nextOffset
      // Resumable when nothing after `since` has been trimmed from the history.
      if (since.offset >= oldestKept - 1) {
        const missed = entries.filter((entry) => entry.offset > since.offset && (id === undefined || entry.id === id))
        const resume = { type: 'resume', data: { since: since.offset, missed: missed.length } }
        connection.socket.send(this.envelope(connection, streamName, groupId, id, { offset: newest, epoch: this.epoch, event: resume }))
        for (const entry of missed) this.deliver(connection, streamName, groupId, entry, sub.deltas === true)
        return
      }
    }
    const recovered = since ? { recovered: false } : {}
    const position = { offset: newest, epoch: this.epoch }
    if (id !== undefined) {
      const item = this.groups.get(name)?.get(id) ?? null
      connection.socket.send(this.envelope(connection, streamName, groupId, id, { ...position, ...recovered, event: { type: 'sync', data: item } }))
      return
    }
    const all = this.items(streamName, groupId)
    const limit = this.options.syncLimit
    const window = limit === undefined ? all : all.slice(Math.max(0, all.length - limit))
    const more = limit !== undefined && all.length > limit ? { more: String(all.length - limit) } : {}
    connection.socket.send(
      this.envelope(connection, streamName, groupId, undefined, { ...position, ...recovered, ...more, event: { type: 'sync', data: window } }),
    )
  }

  private onPage(connection: Connection, data: Record<string, unknown>): void {
    const streamName = String(data.streamName)
    const groupId = String(data.groupId)
    const before = Number(data.before)
    const limit = Number(data.limit)
    if (this.options.ignorePages) return
    if (this.options.refusePages) {
      const error = { type: 'event', event: { type: 'error', data: { code: 'UNKNOWN_SUBSCRIPTION', message: 'no such subscription' } } }
      connection.socket.send(this.envelope(connection, streamName, groupId, undefined, { event: error }))
      return
    }
    const all = this.items(streamName, groupId)
    const start = Math.max(0, before - limit)
    const page = all.slice(start, before)
    const more = start > 0 ? { more: String(start) } : {}
    connection.socket.send(this.envelope(connection, streamName, groupId, undefined, { ...more, event: { type: 'page', data: page } }))
  }
}

/** Poll `check` until it is truthy; fail after `timeoutMs` with `what`. */
export async function waitFor<T>(check: () => T | undefined | null | false, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
