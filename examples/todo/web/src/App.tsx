import { useStreamGroup, useStreamStatus } from '@surge/stream-client/react'
import { useEffect, useState, type FormEvent } from 'react'
import { ConnectionBanner } from './ConnectionBanner'
import { ServerUnreachable, useTodoEndpoints } from './hooks/useTodoEndpoints'
import { newUserId, useTypingIndicator, useTypingNotifier } from './hooks/useTyping'
import type { Todo } from './types'

// One per tab (module scope: stable across renders and StrictMode).
const USER_ID = newUserId()

export function App() {
  const { createTodo, updateTodo, deleteTodo, sendTyping } = useTodoEndpoints()

  // Subscribe to all todos in the 'inbox' group: the list below comes only from this
  // subscription (its sync, then every create/update/delete), never from a refetch.
  const {
    data: todos,
    event: inbox,
    isSynced,
  } = useStreamGroup<Todo>({
    groupId: 'inbox',
    streamName: 'todo',
  })
  const connection = useStreamStatus()

  const someoneIsTyping = useTypingIndicator(inbox, USER_ID)
  const typing = useTypingNotifier(sendTyping, USER_ID)
  const [draft, setDraft] = useState('')
  const [error, setError] = useState<{ message: string; unreachable: boolean } | null>(null)

  // "Could not reach the server" is stale once the connection is back: the banner said why.
  useEffect(() => {
    if (connection.state === 'open') setError((current) => (current?.unreachable ? null : current))
  }, [connection.state])

  const run = async (action: () => Promise<unknown>): Promise<boolean> => {
    try {
      await action()
      setError(null)
      return true
    } catch (exc) {
      setError({
        message: exc instanceof Error ? exc.message : String(exc),
        unreachable: exc instanceof ServerUnreachable,
      })
      return false
    }
  }

  const handleAddTodo = async (event: FormEvent) => {
    event.preventDefault()
    const description = draft.trim()
    if (!description) return
    typing.stop()
    setDraft('')
    // No need to update the list here: the stream brings the new todo to every tab.
    if (!(await run(() => createTodo(description)))) setDraft(description)
  }

  const left = todos.filter((todo) => !todo.completedAt).length

  return (
    // data-subscribed: the group subscription exists and has had its first sync, so its typing
    // listener is attached.
    <main className="todo-app" data-subscribed={inbox !== null && isSynced}>
      <ConnectionBanner status={connection} />
      <h1>Inbox</h1>

      <form className="new-todo" onSubmit={handleAddTodo}>
        <input
          data-testid="new-todo"
          aria-label="New todo"
          placeholder="What needs to be done?"
          autoComplete="off"
          value={draft}
          onChange={(event) => {
            setDraft(event.target.value)
            typing.onInput()
          }}
        />
        <button type="submit" data-testid="add-todo" disabled={!draft.trim()}>
          Add
        </button>
      </form>

      <p className="typing" data-testid="typing-indicator" hidden={!someoneIsTyping}>
        someone is typing…
      </p>

      {error && (
        <p className="error" role="alert" data-testid="error">
          {error.message}
        </p>
      )}

      {todos.length === 0 ? (
        <p className="empty" data-testid="empty">
          Nothing to do.
        </p>
      ) : (
        <ul className="todo-list" aria-label="Todos">
          {todos.map((todo) => {
            const done = Boolean(todo.completedAt)
            return (
              <li
                key={todo.id}
                data-testid="todo-item"
                data-todo-id={todo.id}
                data-completed={done}
                className={done ? 'done' : undefined}
              >
                <label>
                  <input
                    type="checkbox"
                    data-testid="toggle-todo"
                    aria-label={`Complete ${todo.description}`}
                    checked={done}
                    onChange={() => run(() => updateTodo(todo.id, !done))}
                  />
                  <span data-testid="todo-description">{todo.description}</span>
                </label>
                <button
                  type="button"
                  data-testid="delete-todo"
                  aria-label={`Delete ${todo.description}`}
                  onClick={() => run(() => deleteTodo(todo.id))}
                >
                  ×
                </button>
              </li>
            )
          })}
        </ul>
      )}

      <footer data-testid="todo-count">
        {left} of {todos.length} left
      </footer>
    </main>
  )
}
