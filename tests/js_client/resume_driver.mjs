// The TypeScript client through a lost connection, for tests/js_client/test_js_client_live.py.
// Usage: node resume_driver.mjs <ws-url>. Prints JSON lines: {"ready":true} once both
// subscriptions are synced, {"status":...} on every status change, and, once the connection is
// back and the group holds the marker item "m7", one {"report":...} line, then exits.
import { createRequire } from 'node:module'
import { Stream } from '../../clients/js/dist/index.js'

const require = createRequire(new URL('../../clients/js/package.json', import.meta.url))
const { WebSocket } = require('ws')

const connections = []
class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols)
    const frames = []
    connections.push(frames)
    this.addEventListener('message', (event) => frames.push(JSON.parse(String(event.data))))
  }
}

const say = (line) => process.stdout.write(JSON.stringify(line) + '\n')
async function until(check, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const stream = new Stream(process.argv[2], {
  WebSocket: RecordingWebSocket,
  reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
})
const group = stream.subscribeGroup('chat', 'c1')
const item = stream.subscribeItem('chat', 'c1', 'm5')
const events = { group: [], item: [] }
const recoveries = { group: [], item: [] }
group.onEvent('note', (data) => events.group.push(data))
item.onEvent('note', (data) => events.item.push(data))
group.onRecover((recovery) => recoveries.group.push(recovery))
item.onRecover((recovery) => recoveries.item.push(recovery))
let lost = false
stream.onStatusChange((status) => {
  if (status.state !== 'open') lost = true
  say({ status: status.state, attempt: status.attempt })
})
try {
  await until(() => group.isSynced && item.isSynced, 'the syncs')
  say({ ready: true })
  await until(() => lost && stream.status.state === 'open' && group.getState().some((m) => m.id === 'm7'), 'the marker')
  say({
    report: {
      group: group.getState(),
      item: item.getState(),
      events,
      recoveries,
      connections: connections.filter((frames) => frames.length > 0),
    },
  })
} finally {
  stream.close()
}
