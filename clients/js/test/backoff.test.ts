/** Reconnect delays: exponential, capped, jittered within the stated range; bad options refused. */

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backoffDelay, DEFAULT_BACKOFF } from '../src/index.js'
import { backoffOptions } from '../src/backoff.js'

test('the delay doubles from the initial delay and stops at the cap', () => {
  const options = backoffOptions({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 0 })
  const delays = [1, 2, 3, 4, 5, 6, 50, 5000].map((attempt) => backoffDelay(attempt, options))
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000])
})

test('jitter takes up to its fraction off, never more, never adds', () => {
  const options = backoffOptions({ initialDelayMs: 1000, maxDelayMs: 1000, jitter: 0.5 })
  assert.equal(backoffDelay(1, options, () => 0), 1000)
  assert.ok(Math.abs(backoffDelay(1, options, () => 0.999999) - 500.0005) < 1e-6)
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(3, options)
    assert.ok(delay > 500 && delay <= 1000, String(delay))
  }
})

test('the defaults: 500 ms first, 10 s cap, half jitter, stable after 5 s', () => {
  assert.deepEqual(DEFAULT_BACKOFF, { initialDelayMs: 500, maxDelayMs: 10_000, factor: 2, jitter: 0.5, stableAfterMs: 5000 })
})

test('invalid options are a RangeError naming the field', () => {
  assert.throws(() => backoffOptions({ initialDelayMs: -1 }), /initialDelayMs/)
  assert.throws(() => backoffOptions({ maxDelayMs: Number.NaN }), /maxDelayMs/)
  assert.throws(() => backoffOptions({ factor: 0.5 }), /factor/)
  assert.throws(() => backoffOptions({ jitter: 2 }), /jitter/)
  assert.throws(() => backoffOptions({ stableAfterMs: -1 }), /stableAfterMs/)
  assert.throws(() => backoffOptions({ initialDelayMs: 5000, maxDelayMs: 100 }), /at least/)
})
