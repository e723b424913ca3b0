/** A message, as stored in the `message` stream (examples/ai-chat/steps/message_stream.py). */
export type Message = {
  id: string
  role: 'user' | 'assistant'
  content: string
  status: 'streaming' | 'done' | 'error'
  createdAt: string
  replyTo?: string | null
  /** 1 for a reply's first generation; more when it was regenerated (crash, retry). */
  attempt: number
  error?: string | null
}

/** The data of the ephemeral `typing` event (examples/ai-chat/steps/generate_reply_step.py). */
export type TypingEvent = {
  replyId: string
  isTyping: boolean
}
