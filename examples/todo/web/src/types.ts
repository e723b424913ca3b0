/** A todo, as stored in the `todo` stream (examples/todo/steps/todo_stream.py). */
export type Todo = {
  id: string
  description: string
  createdAt: string
  dueDate?: string | null
  completedAt?: string | null
}

/** The data of the ephemeral `typing` event (examples/todo/steps/typing_step.py). */
export type TypingEvent = {
  userId: string
  isTyping: boolean
}
