/**
 * Update operations, applied to the client's copy of an item when a `patch` frame arrives
 * (docs/protocol.md section 4). The semantics are exactly those of the server's
 * `surge.streams.ops.apply_ops`, so the copy stays equal to the stored item:
 *
 *   {type:'set', path:'a.b', value}       '' replaces the whole item (an object)
 *   {type:'merge', path:'', value:{...}}  shallow merge into an object ('' = the item)
 *   {type:'increment', path:'n', by:1}    a missing number counts as 0
 *   {type:'decrement', path:'n', by:1}
 *   {type:'append', path:'s', value:'x'}  string concatenation, or list append
 *   {type:'remove', path:'x'}             a missing path is a no-op
 *
 * A path is object keys joined by '.'. Missing objects on the way are created; walking through a
 * value that is not an object (null included) is an error. Ops apply in order to a copy: the
 * item passed in is never changed, and any failure throws `PatchError` with nothing applied.
 * The item's id wins over any `id` the ops write.
 */

/** One update operation, as on the wire. */
export type UpdateOp =
  | { type: 'set'; path: string; value: unknown }
  | { type: 'merge'; path: string; value: Record<string, unknown> }
  | { type: 'increment'; path: string; by?: number }
  | { type: 'decrement'; path: string; by?: number }
  | { type: 'append'; path: string; value: unknown }
  | { type: 'remove'; path: string }

type JsonObject = Record<string, unknown>

/** An op that does not fit the item (or is malformed); `index` is the op's position. */
export class PatchError extends Error {
  readonly index: number

  constructor(index: number, message: string) {
    super(`ops[${index}]: ${message}`)
    this.name = 'PatchError'
    this.index = index
  }
}

const OP_TYPES: ReadonlySet<string> = new Set([
  'set',
  'merge',
  'increment',
  'decrement',
  'append',
  'remove',
])

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function has(node: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(node, key)
}

/** Assign an own property, even for keys such as `__proto__` (no prototype pollution). */
function put(node: JsonObject, key: string, value: unknown): void {
  Object.defineProperty(node, key, { value, writable: true, enumerable: true, configurable: true })
}

function clone<T>(value: T): T {
  // Items and op values are JSON: structuredClone copies them exactly (and keeps __proto__ keys).
  return structuredClone(value)
}

/** A shallow copy of a JSON object whose own keys are kept as own data properties. */
function copyObject(source: JsonObject): JsonObject {
  const target: JsonObject = {}
  for (const key of Object.keys(source)) put(target, key, source[key])
  return target
}

function split(path: unknown, index: number): string[] {
  if (typeof path !== 'string') throw new PatchError(index, 'path must be a string')
  if (path === '') return []
  const parts = path.split('.')
  if (parts.some((part) => part === '')) {
    throw new PatchError(index, `path '${path}' has an empty segment`)
  }
  return parts
}

function walk(item: JsonObject, parts: string[], index: number, create: boolean): JsonObject | null {
  let node = item
  for (let depth = 0; depth < parts.length - 1; depth++) {
    const part = parts[depth]!
    if (!has(node, part)) {
      if (!create) return null
      const child: JsonObject = {}
      put(node, part, child)
      node = child
      continue
    }
    const child = node[part]
    if (!isObject(child)) {
      throw new PatchError(index, `'${parts.slice(0, depth + 1).join('.')}' is not an object`)
    }
    node = child
  }
  return node
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number'
}

function kindOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'list'
  return typeof value
}

/**
 * Apply `ops` to a copy of `item` (null: a missing item starts as `{}`) and return it with
 * `id`. `item` is not changed.
 *
 * @throws PatchError when an op is malformed or does not fit the item.
 */
export function applyOps<T extends { id: string }>(
  item: T | null | undefined,
  ops: readonly UpdateOp[],
  id: string,
): T {
  if (!Array.isArray(ops)) throw new PatchError(0, 'ops must be a list')
  let result: JsonObject = item == null ? {} : clone(item as unknown as JsonObject)
  ops.forEach((op: UpdateOp, index: number) => {
    if (!isObject(op) || !OP_TYPES.has(op.type)) {
      throw new PatchError(index, `unknown op type ${JSON.stringify(isObject(op) ? op.type : op)}`)
    }
    const kind = op.type
    const given: unknown = 'value' in op ? clone(op.value) : undefined
    const parts = split(op.path, index)
    if (parts.length === 0) {
      if ((kind !== 'set' && kind !== 'merge') || !isObject(given)) {
        throw new PatchError(index, `${kind} of the whole item needs an object`)
      }
      const base = kind === 'set' ? {} : copyObject(result)
      for (const name of Object.keys(given)) put(base, name, given[name])
      result = base
      return
    }
    const node = walk(result, parts, index, kind !== 'remove')
    if (node === null) return // remove of a missing path
    const key = parts[parts.length - 1]!
    const path = op.path
    switch (kind) {
      case 'set':
        put(node, key, given)
        break
      case 'remove':
        delete node[key]
        break
      case 'merge': {
        if (!isObject(given)) throw new PatchError(index, 'merge needs an object value')
        if (!has(node, key)) {
          put(node, key, copyObject(given))
        } else {
          const current = node[key]
          if (!isObject(current)) {
            throw new PatchError(index, `cannot merge into '${path}': not an object`)
          }
          for (const name of Object.keys(given)) put(current, name, given[name])
        }
        break
      }
      case 'increment':
      case 'decrement': {
        const by = op.by ?? 1
        if (!isNumber(by) || !Number.isFinite(by)) {
          throw new PatchError(index, "'by' must be a finite number")
        }
        const current = has(node, key) ? node[key] : 0
        if (!isNumber(current)) {
          throw new PatchError(index, `cannot ${kind} '${path}': it is a ${kindOf(current)}`)
        }
        put(node, key, kind === 'increment' ? current + by : current - by)
        break
      }
      case 'append': {
        if (!has(node, key)) {
          put(node, key, typeof given === 'string' ? given : [given])
          break
        }
        const current = node[key]
        if (typeof current === 'string') {
          if (typeof given !== 'string') {
            throw new PatchError(index, `append to string '${path}' needs a string`)
          }
          put(node, key, current + given)
        } else if (Array.isArray(current)) {
          current.push(given)
        } else {
          throw new PatchError(index, `cannot append to '${path}': it is a ${kindOf(current)}`)
        }
        break
      }
    }
  })
  put(result, 'id', id)
  return result as unknown as T
}
