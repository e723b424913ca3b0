/**
 * `node build-test/test/ops-cli.js < cases.json`: apply each case's ops with the client's
 * `applyOps` and print the results as JSON, one entry per case: `{"item": ...}` or
 * `{"error": index}`. tests/unit/test_js_client.py feeds it the same cases as the server's
 * `surge.streams.ops.apply_ops` and compares, so the two stay the same semantics.
 */

import { applyOps, PatchError, type UpdateOp } from '../src/ops.js'

type Case = { item: { id: string } | null; ops: UpdateOp[]; id: string }

const chunks: Buffer[] = []
process.stdin.on('data', (chunk: Buffer) => chunks.push(chunk))
process.stdin.on('end', () => {
  const cases = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Case[]
  const results = cases.map(({ item, ops, id }) => {
    const before = JSON.stringify(item)
    try {
      const result = applyOps(item, ops, id)
      if (JSON.stringify(item) !== before) return { mutatedInput: true }
      return { item: result }
    } catch (error) {
      if (error instanceof PatchError) {
        if (JSON.stringify(item) !== before) return { mutatedInput: true }
        return { error: error.index }
      }
      throw error
    }
  })
  process.stdout.write(JSON.stringify(results))
})
