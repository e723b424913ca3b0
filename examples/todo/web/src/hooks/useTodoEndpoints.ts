import { useMemo } from 'react'
import { API_BASE } from '../server'
import type { Todo } from '../types'

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${API_BASE}${path}`, {
    method,
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!response.ok) {
    throw new Error(`${method} ${path} failed: ${response.status}`)
  }
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
