// Drives @surge/stream-client (clients/js/dist) against a live Surge server, for
// tests/js_client/test_js_client_live.py. Usage: node live_driver.mjs <http-base-url>
// Prints one JSON object: what the client ended with and which frame types it received.
import { createRequire } from 'node:module'
import { Stream } from '../../clients/js/dist/index.js'

const require = createRequire(new URL('../../clients/js/package.json', import.meta.url))
const { WebSocket } = require('ws')

const base = process.argv[2]
const received = []
class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols)
    this.addEventListener('message', (event) => received.push(JSON.parse(String(event.data))))
  }
}

// The compact patch form (protocol section 4) has no `event`: it is the `patch` array.
const frameType = (frame) => (frame.event ? frame.event.type : Array.isArray(frame.patch) ? 'compact patch' : '?')

async function until(check, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function post(path, body) {
  const response = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`)
}

const stream = new Stream(base.replace(/^http/, 'ws') + '/', { WebSocket: RecordingWebSocket })
const chat = stream.subscribeGroup('chat', 'c1')
const ids = (state) => state.map((message) => message.id)
try {
  await until(() => chat.isSynced, 'the sync')
  const window = ids(chat.getState())
  const hadMore = chat.hasMore()
  const pages = []
  while (chat.hasMore()) pages.push(ids(await chat.loadOlder(2)))
  const words = [' streamed', ' word', ' by', ' word']
  for (const word of words) await post('/append', { id: 'm5', text: word })
  await until(() => chat.getState().find((m) => m.id === 'm5')?.content === 'hello' + words.join(''), 'the appends')
  process.stdout.write(
    JSON.stringify({ window, hadMore, pages, state: chat.getState(), types: received.map(frameType) }),
  )
} finally {
  stream.close()
}
