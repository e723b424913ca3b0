// Two TypeScript clients through streams.revoke (close 4003), for
// tests/js_client/test_js_client_live.py. Usage: node revoke_driver.mjs <ws-url>.
// `alice` (token "alice") is a default Stream; `carol` (token "carol") has retryRefused, the
// positive control: the same backoff without jitter, so a retry of alice's would be due when
// carol's is. Prints JSON lines: {"ready":true} once both are synced, then {"stream", "state",
// "error"} on every status change, and when stdin ends one {"report":...} line, then exits.
import { createRequire } from 'node:module'
import { AccessRevokedError, Stream } from '../../clients/js/dist/index.js'

const require = createRequire(new URL('../../clients/js/package.json', import.meta.url))
const { WebSocket } = require('ws')

const say = (line) => process.stdout.write(JSON.stringify(line) + '\n')
const describeError = (error) =>
  error ? { name: error.name, code: error.code, reason: error.reason, status: error.status } : null

const reconnect = { initialDelayMs: 100, maxDelayMs: 500, jitter: 0 }
const streams = {
  alice: new Stream(process.argv[2], { WebSocket, authToken: 'alice', reconnect }),
  carol: new Stream(process.argv[2], { WebSocket, authToken: 'carol', reconnect, retryRefused: true }),
}
const statuses = { alice: [], carol: [] }
const groups = {}
for (const [name, stream] of Object.entries(streams)) {
  stream.onStatusChange((status) => {
    statuses[name].push(status.state)
    say({ stream: name, state: status.state, error: describeError(status.error) })
  })
  groups[name] = stream.subscribeGroup('notes', 'g1')
}

const deadline = Date.now() + 30000
while (!(groups.alice.isSynced && groups.carol.isSynced)) {
  if (Date.now() > deadline) throw new Error('timed out waiting for the syncs')
  await new Promise((resolve) => setTimeout(resolve, 20))
}
say({ ready: true })

process.stdin.resume()
process.stdin.on('end', () => {
  let subscribeError = null
  try {
    streams.alice.subscribeGroup('notes', 'g2')
  } catch (error) {
    subscribeError = { name: error.name, isAccessRevoked: error instanceof AccessRevokedError }
  }
  say({ report: { statuses, subscribeError, aliceError: describeError(streams.alice.status.error) } })
  for (const stream of Object.values(streams)) stream.close()
})
