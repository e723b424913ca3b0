/**
 * The React entry in a DOM (jsdom) with react-dom, against FakeSurge over real WebSockets:
 * Motia's hooks keep their contract, useStreamStatus follows an outage, the provider closes its
 * stream on unmount, StrictMode's double effects leave one subscription, a revoked stream (4003)
 * shows in the status and does not break hooks mounted after it.
 */

import assert from 'node:assert/strict'
import { after, afterEach, before, test } from 'node:test'
import { JSDOM } from 'jsdom'
import { act, StrictMode, type ReactNode } from 'react'
import { createRoot, type Root } from 'react-dom/client'
import { WebSocket } from 'ws'
import { AccessRevokedError, type WebSocketConstructor } from '../src/index.js'
import {
  MotiaStreamProvider,
  useStreamEventHandler,
  useStreamGroup,
  useStreamItem,
  useStreamStatus,
  type StreamStatus,
} from '../src/react/index.js'
import { FakeSurge } from './fake-surge.js'

type Todo = { id: string; description: string }
type Seen = {
  group?: ReturnType<typeof useStreamGroup<Todo>>
  item?: ReturnType<typeof useStreamItem<Todo>>
  status?: StreamStatus
  events: unknown[]
  states: string[]
}

const globals = globalThis as Record<string, unknown>
let dom: JSDOM

before(() => {
  dom = new JSDOM('<!doctype html><body></body>')
  globals.window = dom.window
  globals.document = dom.window.document
  globals.IS_REACT_ACT_ENVIRONMENT = true
})

after(() => {
  dom.window.close()
  delete globals.window
  delete globals.document
})

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

const OPTIONS = {
  WebSocket: WebSocket as unknown as WebSocketConstructor,
  reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
}

async function fake(options: ConstructorParameters<typeof FakeSurge>[0] = {}) {
  const server = await FakeSurge.create(options)
  cleanups.push(() => server.stop())
  return server
}

async function mount(node: ReactNode): Promise<Root> {
  const container = document.createElement('div')
  document.body.append(container)
  const root = createRoot(container)
  await act(async () => root.render(node))
  cleanups.push(() => act(async () => root.unmount()))
  return root
}

/** Let React and the sockets run until `check` holds (bounded). */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await act(async () => {
      await new Promise((resolve) => setTimeout(resolve, 10))
    })
  }
}

function Probe({ seen, itemId = 't1' }: { seen: Seen; itemId?: string }) {
  const group = useStreamGroup<Todo>({ streamName: 'todo', groupId: 'inbox' })
  const item = useStreamItem<Todo>({ streamName: 'todo', groupId: 'inbox', id: itemId })
  const status = useStreamStatus()
  useStreamEventHandler({ event: group.event, type: 'typing', listener: (data) => seen.events.push(data) }, [])
  seen.group = group
  seen.item = item
  seen.status = status
  if (seen.states.at(-1) !== status.state) seen.states.push(status.state)
  return null
}

const newSeen = (): Seen => ({ events: [], states: [] })
const descriptions = (seen: Seen) => (seen.group?.data ?? []).map((todo) => todo.description)

test('useStreamGroup, useStreamItem and useStreamEventHandler keep Motia’s contract', async () => {
  const server = await fake()
  server.set('todo', 'inbox', 't1', { description: 'one' })
  const seen = newSeen()
  await mount(
    <MotiaStreamProvider address={server.url} options={OPTIONS}>
      <Probe seen={seen} />
    </MotiaStreamProvider>,
  )
  await until(() => seen.group?.isSynced === true && seen.item?.data !== undefined, 'the syncs')
  assert.deepEqual(descriptions(seen), ['one'])
  assert.equal(seen.item?.data?.description, 'one')
  assert.ok(seen.group?.event, 'the subscription is handed out for event handlers')

  server.set('todo', 'inbox', 't2', { description: 'two' })
  server.send('todo', 'inbox', undefined, { type: 'typing', data: { who: 'a' } })
  server.delete('todo', 'inbox', 't1')
  await until(() => descriptions(seen).join() === 'two' && seen.item?.data === null, 'the changes')
  assert.deepEqual(seen.events, [{ who: 'a' }])
  assert.equal(seen.status?.state, 'open')
})

test('useStreamStatus goes open -> reconnecting -> open through an outage, and the data catches up', async () => {
  const server = await fake()
  server.set('todo', 'inbox', 't1', { description: 'one' })
  const seen = newSeen()
  await mount(
    <MotiaStreamProvider address={server.url} options={OPTIONS}>
      <Probe seen={seen} />
    </MotiaStreamProvider>,
  )
  await until(() => seen.group?.isSynced === true, 'the sync')
  await server.stop()
  await until(() => seen.status?.state === 'reconnecting' && seen.status.attempt >= 2, 'reconnecting')
  server.set('todo', 'inbox', 't2', { description: 'made while away' })
  await server.start()
  await until(() => seen.status?.state === 'open' && descriptions(seen).length === 2, 'back')
  assert.deepEqual(descriptions(seen), ['one', 'made while away'])
  assert.deepEqual(seen.states.slice(-3), ['open', 'reconnecting', 'open'])
  assert.equal(seen.status?.attempt, 0)
  // It resumed: the re-join carried since, and no second sync replaced the list.
  const groupJoins = server.framesOf('join').filter((join) => join.id === undefined)
  assert.deepEqual(groupJoins.at(-1)!.since, { offset: 1, epoch: 'epoch-1' })
})

test('unmounting the provider closes its stream: no connection, no reconnect', async () => {
  const server = await fake()
  const seen = newSeen()
  const root = await mount(
    <MotiaStreamProvider address={server.url} options={OPTIONS}>
      <Probe seen={seen} />
    </MotiaStreamProvider>,
  )
  await until(() => seen.group?.isSynced === true, 'the sync')
  await act(async () => root.unmount())
  await until(() => server.connectionCount === 0, 'the close')
  const upgrades = server.upgrades.length
  await new Promise((resolve) => setTimeout(resolve, 250)) // several retry periods
  assert.equal(server.upgrades.length, upgrades)
})

test('under StrictMode the double effects leave one stream with one subscription per hook', async () => {
  const server = await fake()
  server.set('todo', 'inbox', 't1', { description: 'one' })
  const seen = newSeen()
  await mount(
    <StrictMode>
      <MotiaStreamProvider address={server.url} options={OPTIONS}>
        <Probe seen={seen} />
      </MotiaStreamProvider>
    </StrictMode>,
  )
  await until(() => seen.group?.isSynced === true && server.connectionCount === 1, 'one connection')
  await until(() => server.subscriptionCount === 2, 'two subscriptions (group and item)')
  server.set('todo', 'inbox', 't2', { description: 'two' })
  await until(() => descriptions(seen).length === 2, 'the create')
})

test('a windowed group: hasMore and loadOlder from the hook', async () => {
  const server = await fake({ syncLimit: 2 })
  for (let i = 1; i <= 3; i++) server.set('todo', 'inbox', `t${i}`, { description: `d${i}` })
  const seen = newSeen()
  await mount(
    <MotiaStreamProvider address={server.url} options={OPTIONS}>
      <Probe seen={seen} />
    </MotiaStreamProvider>,
  )
  await until(() => seen.group?.isSynced === true, 'the sync')
  assert.deepEqual(descriptions(seen), ['d2', 'd3'])
  assert.equal(seen.group?.hasMore, true)
  await act(async () => {
    await seen.group!.loadOlder(5)
  })
  await until(() => descriptions(seen).length === 3, 'the page')
  assert.deepEqual(descriptions(seen), ['d1', 'd2', 'd3'])
  assert.equal(seen.group?.hasMore, false)
})

test('after a 4003 useStreamStatus shows closed with the error, and hooks mounted later do not throw', async () => {
  const server = await fake()
  server.set('todo', 'inbox', 't1', { description: 'one' })
  const seen = newSeen()
  const later = newSeen()
  const tree = (children: ReactNode) => (
    <MotiaStreamProvider address={server.url} options={OPTIONS}>
      {children}
    </MotiaStreamProvider>
  )
  const root = await mount(tree(<Probe seen={seen} />))
  await until(() => seen.group?.isSynced === true, 'the sync')
  server.closeAll(4003, 'access revoked')
  await until(() => seen.status?.state === 'closed', 'closed')
  assert.ok(seen.status?.error instanceof AccessRevokedError)
  assert.equal(seen.status.error.code, 4003)
  assert.deepEqual(descriptions(seen), ['one'], 'what was loaded stays')
  // A component mounted now, under the same provider (same stream): no subscription, no throw.
  await act(async () => root.render(tree([<Probe key="a" seen={seen} />, <Probe key="b" seen={later} />])))
  assert.equal(later.status?.state, 'closed')
  assert.deepEqual(later.group?.data, [])
  assert.equal(later.group?.isSynced, false)
  assert.equal(later.item?.data, undefined)
  assert.equal(server.upgrades.length, 1)
})
