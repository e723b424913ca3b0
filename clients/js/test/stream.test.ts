/**
 * The client against FakeSurge (real WebSockets on loopback): Motia's behaviour, then resume,
 * deltas, windowed pages, reconnect forever, auth tokens and the status, and what each close
 * code does (4003 stops, 4029 keeps the backoff growing, 4001 and the rest reconnect).
 */

import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import {
  AccessRevokedError,
  Stream,
  UpgradeRefusedError,
  type StreamOptions,
  type StreamStatus,
  type WebSocketConstructor,
  type WebSocketLike,
} from '../src/index.js'
import { FakeSurge, waitFor, type FakeOptions } from './fake-surge.js'

type Todo = { id: string; description: string; done?: boolean; tags?: string[]; n?: number }

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function fake(options: FakeOptions = {}): Promise<FakeSurge> {
  const server = await FakeSurge.create(options)
  cleanups.push(() => server.stop())
  return server
}

// Fast retries so the tests are quick; the default backoff is tested in backoff.test.ts.
const FAST = { initialDelayMs: 20, maxDelayMs: 100 }

function connect(server: FakeSurge, options: StreamOptions = {}): Stream {
  const stream = new Stream(server.url, {
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    reconnect: FAST,
    ...options,
  })
  cleanups.push(() => stream.close())
  return stream
}

function recordStatus(stream: Stream): StreamStatus[] {
  const seen: StreamStatus[] = [stream.status]
  stream.onStatusChange((status) => seen.push(status))
  return seen
}

const descriptions = (todos: Todo[] | null) => (todos ?? []).map((todo) => todo.description)

describe('Motia behaviour', () => {
  test('a group subscription gets the sync, then every create, update and delete', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 't1', { description: 'one' })
    const stream = connect(server)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    const changes: Todo[][] = []
    inbox.addChangeListener((todos) => changes.push(todos ?? []))
    await waitFor(() => inbox.isSynced, 'the sync')
    assert.deepEqual(descriptions(inbox.getState()), ['one'])

    server.set('todo', 'inbox', 't2', { description: 'two' })
    server.set('todo', 'inbox', 't1', { description: 'one!' })
    server.delete('todo', 'inbox', 't2')
    await waitFor(() => changes.length === 4, 'four changes')
    assert.deepEqual(changes.map(descriptions), [['one'], ['one', 'two'], ['one!', 'two'], ['one!']])
    // The join: Motia's data, plus the deltas request and no `since` on a first join.
    const [join] = server.framesOf('join')
    assert.deepEqual(Object.keys(join!).sort(), ['compact', 'deltas', 'groupId', 'streamName', 'subscriptionId'])
    assert.equal(join!.deltas, true)
    assert.equal(join!.compact, true)
  })

  test('an item subscription follows its item and its events, the group sees item events too', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 't1', { description: 'one' })
    const stream = connect(server)
    const item = stream.subscribeItem<Todo>('todo', 'inbox', 't1')
    const group = stream.subscribeGroup<Todo>('todo', 'inbox')
    const itemEvents: unknown[] = []
    const groupEvents: unknown[] = []
    item.onEvent('typing', (data) => itemEvents.push(data))
    group.onEvent('typing', (data) => groupEvents.push(data))
    await waitFor(() => item.isSynced && group.isSynced, 'both syncs')
    assert.equal(item.getState()?.description, 'one')

    server.send('todo', 'inbox', 't1', { type: 'typing', data: { who: 'a' } })
    server.send('todo', 'inbox', undefined, { type: 'typing', data: { who: 'b' } })
    server.delete('todo', 'inbox', 't1')
    await waitFor(() => item.getState() === null && group.getState().length === 0, 'the delete')
    assert.deepEqual(itemEvents, [{ who: 'a' }])
    assert.deepEqual(groupEvents, [{ who: 'a' }, { who: 'b' }])
  })

  test('closing a subscription sends a leave with the join data and stops its changes', async () => {
    const server = await fake()
    const stream = connect(server)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => inbox.isSynced, 'the sync')
    inbox.close()
    const leave = await waitFor(() => server.framesOf('leave')[0], 'the leave')
    assert.deepEqual(leave, { streamName: 'todo', groupId: 'inbox', subscriptionId: inbox.sub.subscriptionId })
    server.set('todo', 'inbox', 't1', { description: 'unseen' })
    const probe = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => probe.isSynced, 'a second sync')
    assert.deepEqual(inbox.getState(), [])
  })

  test('a refused join gets the error event and does not take the next answer', async () => {
    const server = await fake({ deniedGroups: ['secret'] })
    server.set('todo', 'inbox', 't1', { description: 'one' })
    const stream = connect(server)
    const secret = stream.subscribeGroup<Todo>('todo', 'secret')
    const errors: unknown[] = []
    secret.onEvent('error', (data) => errors.push(data))
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => errors.length === 1 && inbox.isSynced, 'the refusal and the sync')
    assert.deepEqual(errors, [{ code: 'STREAM_ACCESS_DENIED', message: 'denied' }])
    assert.deepEqual(descriptions(inbox.getState()), ['one'])
    assert.equal(secret.isSynced, false)
  })

  test('sortKey keeps the group sorted, as Motia does', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 'b', { description: 'b' })
    server.set('todo', 'inbox', 'a', { description: 'a' })
    const stream = connect(server)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox', 'description')
    await waitFor(() => inbox.isSynced, 'the sync')
    server.set('todo', 'inbox', 'c', { description: '0' })
    await waitFor(() => inbox.getState().length === 3, 'the create')
    assert.deepEqual(descriptions(inbox.getState()), ['0', 'a', 'b'])
  })

  test('malformed frames are ignored and the connection carries on', async () => {
    const server = await fake()
    const stream = connect(server)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => inbox.isSynced, 'the sync')
    for (const raw of ['not json', '[]', 'null', '{"streamName":"todo"}', '{"streamName":"todo","groupId":"inbox","event":null}']) {
      server.sendRaw(raw)
    }
    server.set('todo', 'inbox', 't1', { description: 'after the junk' })
    await waitFor(() => inbox.getState().length === 1, 'the create')
    assert.equal(stream.status.state, 'open')
  })
})

describe('resume (protocol section 3)', () => {
  test('after an outage the re-join carries since and the missed changes and events replay, with no sync', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 't1', { description: 'one' })
    const stream = connect(server)
    const statuses = recordStatus(stream)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    const events: unknown[] = []
    const recoveries: unknown[] = []
    inbox.onEvent('note', (data) => events.push(data))
    inbox.onRecover((recovery) => recoveries.push(recovery))
    await waitFor(() => inbox.isSynced, 'the sync')
    const before = inbox.getPosition()
    assert.deepEqual(before, { offset: 1, epoch: 'epoch-1' })

    await server.stop()
    await waitFor(() => stream.status.state === 'reconnecting', 'reconnecting')
    // Changes while the client is away (the history keeps them).
    server.set('todo', 'inbox', 't2', { description: 'two' })
    server.send('todo', 'inbox', undefined, { type: 'note', data: 'while away' })
    server.set('todo', 'inbox', 't1', { description: 'one, edited' })
    await waitFor(() => stream.status.attempt >= 2, 'two failed attempts')
    const syncsBefore = server.framesOf('join').length
    await server.start()

    await waitFor(() => recoveries.length === 1 && inbox.getState().length === 2, 'the resume')
    assert.deepEqual(recoveries, [{ recovered: true, missed: 3 }])
    assert.deepEqual(descriptions(inbox.getState()), ['one, edited', 'two'])
    assert.deepEqual(events, ['while away'])
    assert.deepEqual(inbox.getPosition(), { offset: 4, epoch: 'epoch-1' })
    const rejoin = server.framesOf('join').slice(syncsBefore)
    assert.equal(rejoin.length, 1)
    assert.deepEqual(rejoin[0]!.since, { offset: 1, epoch: 'epoch-1' })
    assert.equal(rejoin[0]!.subscriptionId, inbox.sub.subscriptionId)
    // The banner's story: open, then reconnecting with a growing attempt count, then open.
    const states = statuses.map((s) => s.state)
    assert.equal(states[0], 'connecting')
    assert.equal(states[1], 'open')
    assert.equal(states.at(-1), 'open')
    const attempts = statuses.filter((s) => s.state === 'reconnecting').map((s) => s.attempt)
    assert.ok(attempts.length >= 2, `attempts: ${attempts}`)
    assert.deepEqual(attempts, attempts.map((_, i) => i + 1))
    assert.equal(stream.status.attempt, 0)
  })

  test('an unknown epoch gets a sync marked recovered:false, which replaces the state', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 't1', { description: 'one' })
    const stream = connect(server)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    const recoveries: unknown[] = []
    inbox.onRecover((recovery) => recoveries.push(recovery))
    await waitFor(() => inbox.isSynced, 'the sync')
    await server.stop()
    server.resetHistory('epoch-2')
    server.delete('todo', 'inbox', 't1')
    server.set('todo', 'inbox', 't9', { description: 'fresh' })
    await server.start()
    await waitFor(() => recoveries.length === 1, 'the resync')
    assert.deepEqual(recoveries, [{ recovered: false, missed: 0 }])
    assert.deepEqual(descriptions(inbox.getState()), ['fresh'])
    assert.equal(inbox.getPosition()?.epoch, 'epoch-2')
  })

  test('an offset older than the history window gets a full sync', async () => {
    const server = await fake({ historySize: 2 })
    const stream = connect(server)
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    const recoveries: unknown[] = []
    inbox.onRecover((recovery) => recoveries.push(recovery))
    await waitFor(() => inbox.isSynced, 'the sync')
    await server.stop()
    for (let i = 0; i < 5; i++) server.set('todo', 'inbox', `t${i}`, { description: `d${i}` })
    await server.start()
    await waitFor(() => recoveries.length === 1, 'the resync')
    assert.deepEqual(recoveries, [{ recovered: false, missed: 0 }])
    assert.equal(inbox.getState().length, 5)
  })

  test('an item subscription resumes from its own position', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 't1', { description: 'one' })
    const stream = connect(server)
    const item = stream.subscribeItem<Todo>('todo', 'inbox', 't1')
    await waitFor(() => item.isSynced, 'the sync')
    const recoveries: unknown[] = []
    item.onRecover((recovery) => recoveries.push(recovery))
    await server.stop()
    server.set('todo', 'inbox', 't1', { description: 'one, edited' })
    server.set('todo', 'inbox', 't2', { description: 'other item' })
    await server.start()
    await waitFor(() => item.getState()?.description === 'one, edited', 'the replayed update')
    const joins = server.framesOf('join')
    assert.deepEqual(joins.at(-1)!.since, { offset: 1, epoch: 'epoch-1' })
    assert.deepEqual(recoveries, [{ recovered: true, missed: 1 }])
    // Its position is the resume frame's (the group's newest), not its item's last change: a
    // later resume asks from there and does not fall out of the history window needlessly.
    assert.deepEqual(item.getPosition(), { offset: 3, epoch: 'epoch-1' })
  })

  test('a change is applied once even when two subscriptions of one room both resume', async () => {
    const server = await fake()
    server.set('todo', 'inbox', 't1', { description: 'one', n: 0 })
    const stream = connect(server)
    const a = stream.subscribeGroup<Todo>('todo', 'inbox')
    const b = stream.subscribeGroup<Todo>('todo', 'inbox')
    const seenA: string[][] = []
    a.addChangeListener((todos) => seenA.push(descriptions(todos)))
    await waitFor(() => a.isSynced && b.isSynced, 'both syncs')
    await server.stop()
    server.set('todo', 'inbox', 't2', { description: 'two' })
    server.update('todo', 'inbox', 't1', [{ type: 'increment', path: 'n', by: 1 }])
    await server.start()
    await waitFor(() => a.getState()[0]?.n === 1 && b.getState()[0]?.n === 1, 'both caught up')
    server.set('todo', 'inbox', 't3', { description: 'three' })
    await waitFor(() => a.getState().length === 3 && b.getState().length === 3, 'the live create')
    // Each change once: the second subscription's replay was recognised as duplicates.
    assert.deepEqual(seenA.slice(1), [['one', 'two'], ['one', 'two'], ['one', 'two', 'three']])
    assert.deepEqual(a.getState(), b.getState())
  })
})

describe('deltas (protocol section 4)', () => {
  test('patch frames apply the ops to the copy of the item', async () => {
    const server = await fake()
    server.set('chat', 'c1', 'm1', { description: 'hello', tags: [], n: 1 })
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    const item = stream.subscribeItem<Todo>('chat', 'c1', 'm1')
    await waitFor(() => group.isSynced && item.isSynced, 'the syncs')
    const before = group.getState()[0]
    server.update('chat', 'c1', 'm1', [
      { type: 'append', path: 'description', value: ' world' },
      { type: 'append', path: 'tags', value: 'x' },
      { type: 'increment', path: 'n', by: 2 },
    ])
    await waitFor(() => item.getState()?.n === 3 && group.getState()[0]?.n === 3, 'the patch')
    const expected = { id: 'm1', description: 'hello world', tags: ['x'], n: 3 }
    assert.deepEqual(group.getState()[0], expected)
    assert.deepEqual(item.getState(), expected)
    assert.deepEqual(server.items('chat', 'c1')[0], expected)
    // The old copy was not mutated (React state stays immutable).
    assert.deepEqual(before, { id: 'm1', description: 'hello', tags: [], n: 1 })
  })

  test('compact patch frames apply like verbose ones, to the group and the item', async () => {
    const server = await fake()
    server.set('chat', 'c1', 'm1', { description: 'hello', tags: ['a'], n: 1, gone: true })
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    const item = stream.subscribeItem<Todo>('chat', 'c1', 'm1')
    await waitFor(() => group.isSynced && item.isSynced, 'the syncs')
    const ops = [
      ['append', 'description', ' world'],
      ['append', 'tags', 'x'],
      ['increment', 'n', 2],
      ['decrement', 'n', 0.5],
      ['remove', 'gone'],
      ['set', 'meta.k', { v: 1 }],
    ]
    server.sendRaw(JSON.stringify({ timestamp: Date.now() + 10_000, patch: ['chat', 'c1', 'm1', 1000, 'epoch-1', ops] }))
    await waitFor(() => item.getState()?.n === 2.5 && group.getState()[0]?.n === 2.5, 'the patch')
    const expected = { id: 'm1', description: 'hello world', tags: ['a', 'x'], n: 2.5, meta: { k: { v: 1 } } }
    assert.deepEqual(group.getState()[0], expected)
    assert.deepEqual(item.getState(), expected)
    // The offset counts as the subscription's position: a replayed copy of it is dropped.
    server.sendRaw(JSON.stringify({ timestamp: Date.now() + 20_000, patch: ['chat', 'c1', 'm1', 1000, 'epoch-1', [['increment', 'n', 1]]] }))
    server.sendRaw(JSON.stringify({ timestamp: Date.now() + 30_000, patch: ['chat', 'c1', 'm1', 1001, 'epoch-1', [['increment', 'n', 1]]] }))
    await waitFor(() => item.getState()?.n === 3.5, 'the second patch')
    assert.equal(group.getState()[0]?.n, 3.5)
  })

  test('a patch that does not fit the copy makes the subscription resync', async () => {
    const server = await fake()
    server.set('chat', 'c1', 'm1', { description: 'hello', n: 1 })
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    await waitFor(() => group.isSynced, 'the sync')
    const joins = server.framesOf('join').length
    // The server's item has n as a string now, but this client never saw that set (a bug
    // elsewhere): an increment of n must not be applied to the wrong copy.
    server.sendRaw(
      JSON.stringify({
        timestamp: Date.now() + 10_000,
        streamName: 'chat',
        groupId: 'c1',
        id: 'm1',
        offset: 50,
        epoch: 'epoch-1',
        event: { type: 'patch', data: { ops: [{ type: 'append', path: 'n', value: 'x' }] } },
      }),
    )
    await waitFor(() => server.framesOf('join').length === joins + 1, 'the re-join')
    const rejoin = server.framesOf('join').at(-1)!
    assert.equal(rejoin.since, undefined, 'a resync is a join without since')
    assert.equal(server.framesOf('leave').length, 1)
    await waitFor(() => !group.awaitingAnswer, 'the sync')
    assert.deepEqual(group.getState(), server.items('chat', 'c1'))
  })

  test('deltas:false joins without the request', async () => {
    const server = await fake()
    const stream = connect(server, { deltas: false })
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    await waitFor(() => group.isSynced, 'the sync')
    assert.equal(server.framesOf('join')[0]!.deltas, undefined)
  })
})

describe('windowed groups (protocol section 5)', () => {
  test('loadOlder pages back to the oldest item, then hasMore is false', async () => {
    const server = await fake({ syncLimit: 3 })
    for (let i = 1; i <= 7; i++) server.set('chat', 'c1', `m${i}`, { description: `m${i}` })
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    await waitFor(() => group.isSynced, 'the sync')
    assert.deepEqual(descriptions(group.getState()), ['m5', 'm6', 'm7'])
    assert.equal(group.hasMore(), true)
    const page = await group.loadOlder(3)
    assert.deepEqual(descriptions(page), ['m2', 'm3', 'm4'])
    assert.deepEqual(descriptions(group.getState()), ['m2', 'm3', 'm4', 'm5', 'm6', 'm7'])
    assert.equal(group.hasMore(), true)
    await group.loadOlder(3)
    assert.deepEqual(descriptions(group.getState()), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'])
    assert.equal(group.hasMore(), false)
    assert.deepEqual(await group.loadOlder(), [])
    const pages = server.framesOf('page')
    assert.equal(pages.length, 2)
    assert.deepEqual(pages[0], { streamName: 'chat', groupId: 'c1', subscriptionId: group.sub.subscriptionId, before: '4', limit: 3 })
  })

  test('a refused page rejects loadOlder with the code and is not taken for a join answer', async () => {
    const server = await fake({ syncLimit: 1, refusePages: true })
    server.set('chat', 'c1', 'm1', { description: 'm1' })
    server.set('chat', 'c1', 'm2', { description: 'm2' })
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    await waitFor(() => group.isSynced, 'the sync')
    const errors: unknown[] = []
    group.onEvent('error', (data) => errors.push(data))
    const page = group.loadOlder()
    const second = stream.subscribeGroup<Todo>('chat', 'c1') // its join is answered after the page
    await assert.rejects(page, (error: Error & { code?: string }) => error.code === 'UNKNOWN_SUBSCRIPTION')
    await waitFor(() => second.isSynced, 'the second sync')
    assert.deepEqual(descriptions(second.getState()), ['m2'])
    assert.deepEqual(errors, [])
    assert.deepEqual(descriptions(group.getState()), ['m2'])
    assert.equal(group.hasMore(), true)
  })

  test('loadOlder rejects while disconnected, and a bad limit is a RangeError', async () => {
    const server = await fake({ syncLimit: 1 })
    server.set('chat', 'c1', 'm1', { description: 'm1' })
    server.set('chat', 'c1', 'm2', { description: 'm2' })
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    await waitFor(() => group.isSynced, 'the sync')
    await assert.rejects(group.loadOlder(0), RangeError)
    await server.stop()
    await waitFor(() => stream.status.state !== 'open', 'the drop')
    await assert.rejects(group.loadOlder(), /not connected/)
  })
})

describe('connection', () => {
  test('reconnects forever: attempts keep coming, capped, until the server is back', async () => {
    const server = await fake()
    await server.stop()
    const stream = connect(server, { reconnect: { initialDelayMs: 10, maxDelayMs: 40 } })
    const statuses = recordStatus(stream)
    await waitFor(() => stream.status.attempt >= 8, 'eight failed attempts', 10_000)
    assert.equal(stream.status.state, 'connecting', 'never open yet: connecting, not reconnecting')
    const waits = statuses.filter((s) => s.retryAt !== null).map((s) => s.retryAt!)
    assert.ok(waits.length >= 8)
    await server.start()
    await waitFor(() => stream.status.state === 'open', 'open', 5000)
    assert.equal(stream.status.attempt, 0)
  })

  test('close() stops everything: status closed, subscriptions closed, no reconnect', async () => {
    const server = await fake()
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('todo', 'inbox')
    const closes: string[] = []
    group.onClose(() => closes.push('group'))
    await waitFor(() => stream.status.state === 'open' && group.isSynced, 'open and synced')
    stream.close()
    assert.equal(stream.status.state, 'closed')
    assert.ok(group.isClosed)
    assert.deepEqual(closes, ['group'])
    assert.equal(server.framesOf('leave').length, 0, 'no leave: the socket went first')
    await waitFor(() => server.connectionCount === 0, 'the close')
    const upgrades = server.upgrades.length
    await new Promise((resolve) => setTimeout(resolve, 200)) // several FAST retry periods
    assert.equal(server.upgrades.length, upgrades)
    assert.throws(() => stream.subscribeGroup('todo', 'inbox'), /closed/)
  })

  test('the auth token goes in the subprotocol, asked again at every connect', async () => {
    const server = await fake({ token: 'secret-1' })
    let calls = 0
    const stream = connect(server, {
      authToken: async () => {
        calls += 1
        return 'secret-1'
      },
    })
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => inbox.isSynced, 'the sync')
    assert.deepEqual(server.upgrades[0]!.protocols, ['Authorization', 'secret-1'])
    await server.stop()
    await server.start()
    await waitFor(() => stream.status.state === 'open' && calls === 2, 'the reconnect')
  })

  test('the auth token can go in the query', async () => {
    const server = await fake({ token: 'a b&c' })
    const stream = connect(server, { authToken: 'a b&c', authTokenIn: 'query' })
    await waitFor(() => stream.status.state === 'open', 'open')
    assert.equal(server.upgrades[0]!.url, '/?authToken=a%20b%26c')
    assert.deepEqual(server.upgrades[0]!.protocols, [])
  })

  test('the browser going offline drops the socket at once, coming online retries at once', async () => {
    // A browser's window and navigator, as far as the client looks at them.
    const target = new EventTarget()
    const globals = globalThis as Record<string, unknown>
    const saved = { add: globals.addEventListener, remove: globals.removeEventListener, nav: globals.navigator }
    const navigator = { onLine: true }
    globals.addEventListener = target.addEventListener.bind(target)
    globals.removeEventListener = target.removeEventListener.bind(target)
    Object.defineProperty(globalThis, 'navigator', { value: navigator, configurable: true, writable: true })
    cleanups.push(() => {
      globals.addEventListener = saved.add
      globals.removeEventListener = saved.remove
      Object.defineProperty(globalThis, 'navigator', { value: saved.nav, configurable: true, writable: true })
    })
    const server = await fake()
    // A long backoff: only the online event can bring the connection back within the test.
    const stream = connect(server, { reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000, jitter: 0 } })
    const inbox = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => inbox.isSynced, 'the sync')

    navigator.onLine = false
    target.dispatchEvent(new Event('offline'))
    assert.equal(stream.status.state, 'offline')
    assert.equal(stream.status.attempt, 1)
    await waitFor(() => server.connectionCount === 0, 'the socket closed')
    server.set('todo', 'inbox', 't1', { description: 'while offline' })

    navigator.onLine = true
    target.dispatchEvent(new Event('online'))
    await waitFor(() => stream.status.state === 'open', 'open again (the backoff alone would take 60 s)', 5000)
    await waitFor(() => inbox.getState().length === 1, 'the missed create')
    stream.close()
    const upgrades = server.upgrades.length
    target.dispatchEvent(new Event('offline'))
    target.dispatchEvent(new Event('online'))
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(server.upgrades.length, upgrades)
    assert.equal(stream.status.state, 'closed')
  })

  test('without a WebSocket implementation the constructor says what to pass', () => {
    const original = (globalThis as { WebSocket?: unknown }).WebSocket
    ;(globalThis as { WebSocket?: unknown }).WebSocket = undefined
    try {
      assert.throws(() => new Stream('ws://127.0.0.1:1'), /options\.WebSocket/)
    } finally {
      ;(globalThis as { WebSocket?: unknown }).WebSocket = original
    }
  })
})

describe('close codes (as Surge’s Python client)', () => {
  // No jitter: two streams with these options wait exactly as long before each retry.
  const EXACT = { initialDelayMs: 20, maxDelayMs: 100, jitter: 0 }
  const upgradesWith = (server: FakeSurge, token: string) =>
    server.upgrades.filter((upgrade) => upgrade.protocols[1] === token).length

  test('4003 (access revoked) stops: closed with the code and reason, pending pages reject, no reconnect', async () => {
    const server = await fake({ syncLimit: 1, ignorePages: true })
    server.set('chat', 'c1', 'm1', { description: 'm1' })
    server.set('chat', 'c1', 'm2', { description: 'm2' })
    // The positive control: the same backoff with retryRefused, revoked at the same moment.
    const controlServer = await fake()
    const stream = connect(server, { reconnect: EXACT })
    const control = connect(controlServer, { reconnect: EXACT, retryRefused: true })
    const statuses = recordStatus(stream)
    const group = stream.subscribeGroup<Todo>('chat', 'c1')
    let groupClosed = 0
    group.onClose(() => (groupClosed += 1))
    await waitFor(() => group.isSynced && control.status.state === 'open', 'the sync, the control open')
    const page = group.loadOlder(1)
    await waitFor(() => server.framesOf('page').length === 1, 'the page request (never answered)')

    server.closeAll(4003, 'access revoked')
    controlServer.closeAll(4003, 'access revoked')
    await assert.rejects(page, (error) => error instanceof AccessRevokedError && error.code === 4003)
    await waitFor(() => stream.status.state === 'closed', 'closed')
    const closed = stream.status
    assert.ok(closed.error instanceof AccessRevokedError)
    assert.equal(closed.error.code, 4003)
    assert.equal(closed.error.reason, 'access revoked')
    assert.equal(closed.retryAt, null)
    assert.ok(group.isClosed, 'the subscription ends with the stream')
    assert.equal(groupClosed, 1)

    // The control comes back twice (each time a whole retry period and connect later): a retry
    // of the revoked stream, due at the control's first, would have reached its server by now.
    await waitFor(() => controlServer.upgrades.length === 2 && control.status.state === 'open', 'the control back')
    controlServer.closeAll(1012)
    await waitFor(() => controlServer.upgrades.length === 3 && control.status.state === 'open', 'the control back again')
    assert.equal(server.upgrades.length, 1, 'the revoked stream did not come back')
    assert.deepEqual(statuses.map((status) => status.state), ['connecting', 'open', 'closed'])
    await assert.rejects(group.loadOlder(1), AccessRevokedError)
    assert.throws(() => stream.subscribeGroup('chat', 'c2'), AccessRevokedError)
    stream.close()
    assert.equal(stream.status, closed, 'close() afterwards keeps the reason')
  })

  test('with retryRefused a 4003 is a lost connection: it reconnects, asking the token function again', async () => {
    const server = await fake({ token: 'old' })
    let token = 'old'
    const stream = connect(server, { retryRefused: true, authToken: () => token })
    const statuses = recordStatus(stream)
    const group = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => group.isSynced, 'the sync')
    server.options.token = token = 'new' // new credentials; the old ones are refused from now on
    server.closeAll(4003, 'access revoked')
    await waitFor(() => server.upgrades.length === 2 && stream.status.state === 'open', 'open again')
    assert.deepEqual(server.upgrades.map((upgrade) => upgrade.protocols[1]), ['old', 'new'])
    assert.deepEqual(statuses.map((status) => status.state), ['connecting', 'open', 'reconnecting', 'open'])
    assert.equal(stream.status.error, undefined)
    server.set('todo', 'inbox', 't1', { description: 'after the re-join' })
    await waitFor(() => group.getState().length === 1, 'the create')
  })

  test('4001 (token expired) reconnects with a fresh token from the token function', async () => {
    const server = await fake({ token: 'token-1' })
    let calls = 0
    const stream = connect(server, { authToken: async () => `token-${++calls}` })
    const group = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => group.isSynced, 'the sync')
    server.options.token = 'token-2' // the expired token is refused from now on (401)
    server.closeAll(4001, 'token expired')
    await waitFor(() => server.upgrades.length === 2 && stream.status.state === 'open', 'the reconnect')
    assert.equal(calls, 2)
    assert.deepEqual(server.upgrades[1]!.protocols, ['Authorization', 'token-2'])
    server.set('todo', 'inbox', 't1', { description: 'after the re-join' })
    await waitFor(() => group.getState().length === 1, 'the create')
  })

  /**
   * The wait before each of the first `count` retries while the server closes every connection
   * with `code` as soon as it is open. `stableAfterMs: 0`: every one of them counts as
   * long-lived, which starts the backoff over on a loss, except after 4029.
   */
  async function retryWaits(code: number, count: number): Promise<number[]> {
    const server = await fake()
    server.closeOnOpen = { code }
    const reconnect = { initialDelayMs: 20, factor: 4, maxDelayMs: 10_000, jitter: 0, stableAfterMs: 0 }
    const stream = connect(server, { reconnect })
    const waits: number[] = []
    stream.onStatusChange((status) => {
      if (status.retryAt !== null) waits.push(status.retryAt - Date.now())
    })
    await waitFor(() => waits.length >= count, `${count} retries`, 10_000)
    server.closeOnOpen = null
    await waitFor(() => stream.status.state === 'open', 'open')
    return waits.slice(0, count)
  }

  /** Each wait is read an instant after its delay was added to Date.now(): at most it, well above half. */
  function assertWaits(waits: number[], delays: number[]): void {
    assert.equal(waits.length, delays.length)
    waits.forEach((wait, i) => assert.ok(wait <= delays[i]! && wait > delays[i]! / 2, `waits ${waits}, delays ${delays}`))
  }

  test('4029 (rate limited) reconnects without starting the backoff over, even after a long-lived connection', async () => {
    assertWaits(await retryWaits(4029, 3), [20, 80, 320])
    // The control: the same connections closed with 1012 do start it over each time.
    assertWaits(await retryWaits(1012, 3), [20, 20, 20])
  })

  test('ordinary losses reconnect: 1000, 1001, 1011, 1012, 1013 from the server, and 1006 (no close frame)', async () => {
    const server = await fake()
    const stream = connect(server)
    const group = stream.subscribeGroup<Todo>('todo', 'inbox')
    await waitFor(() => group.isSynced, 'the sync')
    const losses: Array<[string, () => void]> = [1000, 1001, 1011, 1012, 1013].map((code) => [
      String(code),
      () => server.closeAll(code, 'bye'),
    ])
    losses.push(['1006', () => server.dropAll()])
    for (const [what, lose] of losses) {
      const upgrades = server.upgrades.length
      lose()
      await waitFor(() => server.upgrades.length === upgrades + 1 && stream.status.state === 'open', `the reconnect after ${what}`)
    }
    server.set('todo', 'inbox', 't1', { description: 'still followed' })
    await waitFor(() => group.getState().length === 1, 'the create')
  })

  test('an upgrade refused with HTTP 401 or 403 stops the stream (ws tells the status), unless retryRefused', async () => {
    for (const refusal of [401, 403]) {
      const server = await fake({ token: 'right', refusal })
      const stream = connect(server, { authToken: 'wrong', reconnect: EXACT })
      const statuses = recordStatus(stream)
      // The positive control: the same backoff with retryRefused.
      const control = connect(server, { authToken: 'also-wrong', reconnect: EXACT, retryRefused: true })
      await waitFor(() => stream.status.state === 'closed', `closed after ${refusal}`)
      const error = stream.status.error
      assert.ok(error instanceof UpgradeRefusedError, String(error))
      assert.equal(error.status, refusal)
      await waitFor(() => upgradesWith(server, 'also-wrong') >= 3, 'three attempts of the control')
      assert.equal(control.status.state, 'connecting')
      assert.equal(upgradesWith(server, 'wrong'), 1, 'the refused stream did not try again')
      assert.deepEqual(statuses.map((status) => status.state), ['connecting', 'closed'])
      assert.throws(() => stream.subscribeGroup('todo', 'inbox'), UpgradeRefusedError)
    }
  })

  test('other HTTP errors on the upgrade (503) are retried', async () => {
    const server = await fake({ token: 'right', refusal: 503 })
    const stream = connect(server, { authToken: 'wrong' })
    await waitFor(() => stream.status.attempt >= 3, 'three refused attempts')
    assert.equal(stream.status.state, 'connecting')
  })

  test('a browser’s WebSocket (errors say nothing): a refused upgrade is retried, a 4003 still stops', async () => {
    /** As a browser's WebSocket: an error event without a message, then close 1006. */
    class BrowserLikeWebSocket implements WebSocketLike {
      private readonly ws: WebSocket
      constructor(url: string, protocols?: string | string[]) {
        this.ws = new WebSocket(url, protocols)
      }
      get readyState(): number {
        return this.ws.readyState
      }
      send(data: string): void {
        this.ws.send(data)
      }
      close(code?: number, reason?: string): void {
        this.ws.close(code, reason)
      }
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      addEventListener(type: string, listener: (event: any) => void): void {
        const target = this.ws as unknown as EventTarget
        if (type === 'error') target.addEventListener('error', () => listener({ type: 'error' }))
        else target.addEventListener(type, listener)
      }
    }
    const refusing = await fake({ token: 'right' })
    const refused = connect(refusing, { authToken: 'wrong', WebSocket: BrowserLikeWebSocket })
    await waitFor(() => refused.status.attempt >= 3, 'three refused attempts')
    assert.equal(refused.status.state, 'connecting')

    const server = await fake()
    const stream = connect(server, { WebSocket: BrowserLikeWebSocket })
    await waitFor(() => stream.status.state === 'open', 'open')
    server.closeAll(4003, 'access revoked')
    await waitFor(() => stream.status.state === 'closed', 'closed')
    assert.ok(stream.status.error instanceof AccessRevokedError)
  })
})
