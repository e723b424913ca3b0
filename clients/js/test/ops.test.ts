/**
 * applyOps: the server's op semantics (src/surge/streams/ops.py). The exhaustive comparison with
 * the Python implementation is tests/unit/test_js_client.py (through test/ops-cli.ts); these are
 * the cases a reader checks first.
 */

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { applyOps, PatchError, type UpdateOp } from '../src/index.js'

type Doc = { id: string; [key: string]: unknown }

const apply = (item: Doc | null, ...ops: UpdateOp[]) => applyOps<Doc>(item, ops, 'x')

test('set creates the objects on its way, and "" replaces the item', () => {
  assert.deepEqual(apply({ id: 'x' }, { type: 'set', path: 'a.b', value: 1 }), { id: 'x', a: { b: 1 } })
  assert.deepEqual(apply({ id: 'x', a: 1 }, { type: 'set', path: '', value: { b: 2 } }), { id: 'x', b: 2 })
})

test('merge is shallow, into the item or a field', () => {
  const item = { id: 'x', a: { b: 1, c: { d: 1 } } }
  assert.deepEqual(apply(item, { type: 'merge', path: 'a', value: { c: { e: 2 } } }), { id: 'x', a: { b: 1, c: { e: 2 } } })
  assert.deepEqual(apply(item, { type: 'merge', path: '', value: { z: 1 } }), { ...item, z: 1 })
  assert.deepEqual(apply({ id: 'x' }, { type: 'merge', path: 'new', value: { k: 1 } }), { id: 'x', new: { k: 1 } })
})

test('increment and decrement count a missing number as 0', () => {
  assert.deepEqual(apply({ id: 'x' }, { type: 'increment', path: 'n' }), { id: 'x', n: 1 })
  assert.deepEqual(apply({ id: 'x', n: 5 }, { type: 'decrement', path: 'n', by: 2.5 }), { id: 'x', n: 2.5 })
})

test('append concatenates strings, pushes onto lists, starts a missing one', () => {
  assert.deepEqual(apply({ id: 'x', s: 'ab' }, { type: 'append', path: 's', value: 'c' }), { id: 'x', s: 'abc' })
  assert.deepEqual(apply({ id: 'x', l: [1] }, { type: 'append', path: 'l', value: [2] }), { id: 'x', l: [1, [2]] })
  assert.deepEqual(apply({ id: 'x' }, { type: 'append', path: 's', value: 'a' }), { id: 'x', s: 'a' })
  assert.deepEqual(apply({ id: 'x' }, { type: 'append', path: 'l', value: 1 }), { id: 'x', l: [1] })
})

test('remove of a missing path is a no-op', () => {
  assert.deepEqual(apply({ id: 'x', a: 1 }, { type: 'remove', path: 'a' }), { id: 'x' })
  assert.deepEqual(apply({ id: 'x' }, { type: 'remove', path: 'a.b.c' }), { id: 'x' })
})

test('the id wins over any id the ops write', () => {
  assert.deepEqual(apply({ id: 'x' }, { type: 'set', path: 'id', value: 'y' }), { id: 'x' })
  assert.deepEqual(apply(null, { type: 'set', path: '', value: { id: 'y', a: 1 } }), { id: 'x', a: 1 })
})

test('an op that does not fit throws PatchError with its index, and changes nothing', () => {
  const item = { id: 'x', s: 'text', n: null, list: [] as unknown[] }
  const frozen = JSON.stringify(item)
  const bad: UpdateOp[][] = [
    [{ type: 'set', path: 'a', value: 1 }, { type: 'increment', path: 's' }],
    [{ type: 'set', path: 's.inner', value: 1 }],
    [{ type: 'increment', path: 'n' }], // null is not a number
    [{ type: 'merge', path: 'n', value: {} }], // nor an object
    [{ type: 'append', path: 's', value: 1 }],
    [{ type: 'append', path: 'n', value: 'x' }],
    [{ type: 'set', path: 'a..b', value: 1 }],
    [{ type: 'nope', path: 'a' } as unknown as UpdateOp],
  ]
  for (const ops of bad) {
    assert.throws(() => applyOps(item, ops, 'x'), (error: unknown) => error instanceof PatchError && error.index === ops.length - 1)
    assert.equal(JSON.stringify(item), frozen)
  }
})

test('values are copied: a later op does not change the caller’s ops, nor the result’s sharing', () => {
  const value = { deep: [1] }
  const ops: UpdateOp[] = [
    { type: 'set', path: 'a', value },
    { type: 'append', path: 'a.deep', value: 2 },
  ]
  const result = apply({ id: 'x' }, ...ops)
  assert.deepEqual(result, { id: 'x', a: { deep: [1, 2] } })
  assert.deepEqual(value, { deep: [1] })
})

test('a __proto__ key is an ordinary field, never the prototype', () => {
  const result = apply({ id: 'x' }, { type: 'set', path: '__proto__.polluted', value: true })
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
  assert.equal(Object.getPrototypeOf(result), Object.prototype)
  assert.equal(JSON.stringify(result), '{"id":"x","__proto__":{"polluted":true}}')
  const merged = apply({ id: 'x' }, { type: 'merge', path: '', value: JSON.parse('{"__proto__": {"p": 1}}') })
  assert.equal(Object.getPrototypeOf(merged), Object.prototype)
  assert.equal(JSON.stringify(merged), '{"id":"x","__proto__":{"p":1}}')
})
