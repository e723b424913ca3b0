import { useMemo } from 'react'
import { API_BASE } from '../server'
import type { Todo } from '../types'

/** The request never got an answer: the server is down or the network is gone. */
export class ServerUnreachable extends Error {
  constructor() {
    super('Cannot reach the server: the change was not saved. Try again when the connection is back.')
    this.name = 'ServerUnreachable'
  }
}

/** What went wrong, in words: the API's own `error` message when it sent one. */
async function describe(method: string, path: string, response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { error?: unknown; message?: unknown }
    const text = typeof body.error === 'string' ? body.error : typeof body.message === 'string' ? body.message : null
    if (text) return `${method} ${path} failed (${response.status}): ${text}`
  } catch {
    // not JSON: the status says enough
  }
  return `${method} ${path} failed: ${response.status}`
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response
  try {
    response = await fetch(`${API_BASE}${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch {
    // fetch rejects (a TypeError, "Failed to fetch") only when no answer came at all.
    throw new ServerUnreachable()
  }
  if (!response.ok) throw new Error(await describe(method, path, response))
  return (await response.json()) as T
}

/**
 * The todo API. Nothing here touches the list on screen: every change comes back through the
 * stream subscription, to this tab and to every other one.
 */
export function useTodoEndpoints() {
  return useMemo(
    () => ({
      createTodo: (description: string) => call<Todo>('POST', '/todo', { description }),
      updateTodo: (id: string, completed: boolean) =>
        call<Todo>('PUT', `/todo/${encodeURIComponent(id)}`, { completed }),
      deleteTodo: (id: string) => call<Todo>('DELETE', `/todo/${encodeURIComponent(id)}`),
      sendTyping: (userId: string, isTyping: boolean) =>
        call<unknown>('POST', '/todo/typing', { userId, isTyping }),
    }),
    [],
  )
}
