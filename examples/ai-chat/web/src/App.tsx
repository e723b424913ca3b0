import { useStreamGroup } from '@surge/stream-client/react'
import { useEffect, useRef, useState, type FormEvent } from 'react'
import { sendMessage } from './api'
import type { Message } from './types'
import { useAssistantTyping } from './useAssistantTyping'

/** The conversation: `?conversation=<id>` in the address, else "default". */
const CONVERSATION = new URLSearchParams(location.search).get('conversation') || 'default'

export function App() {
  // Every message of the conversation, the assistant's growing reply included, comes from this
  // one subscription: its sync, then each create/update. Ids sort in creation order (a reply's
  // id is its question's id plus "-reply").
  const { data: messages, event: subscription } = useStreamGroup<Message>({
    groupId: CONVERSATION,
    streamName: 'message',
    sortKey: 'id',
  })
  const assistantIsTyping = useAssistantTyping(subscription, messages)
  const [draft, setDraft] = useState('')
  const [error, setError] = useState<string | null>(null)
  const bottom = useRef<HTMLDivElement>(null)

  const lastContent = messages.at(-1)?.content
  useEffect(() => {
    // A block body: recent browsers return a Promise from scrollIntoView, and an effect must
    // return nothing or a cleanup function.
    bottom.current?.scrollIntoView({ block: 'end' })
  }, [messages.length, lastContent])

  const handleSend = async (event: FormEvent) => {
    event.preventDefault()
    const text = draft.trim()
    if (!text) return
    setDraft('')
    try {
      await sendMessage(CONVERSATION, text)
      setError(null)
    } catch (exc) {
      setError(exc instanceof Error ? exc.message : String(exc))
      setDraft(text)
    }
  }

  return (
    // data-subscribed: the group subscription exists and has had its first sync.
    <main className="chat" data-subscribed={subscription !== null}>
      <h1>AI chat</h1>

      <ol className="messages" aria-label="Conversation" data-testid="messages">
        {messages.length === 0 && (
          <li className="empty" data-testid="empty">
            Ask anything to start.
          </li>
        )}
        {messages.map((message) => (
          <li
            key={message.id}
            className={`message ${message.role}`}
            data-testid="message"
            data-message-id={message.id}
            data-role={message.role}
            data-status={message.status}
            data-attempt={message.attempt}
          >
            <span className="author">{message.role === 'user' ? 'You' : 'Assistant'}</span>
            <p className="content" data-testid="message-content">
              {message.content}
            </p>
            {message.status === 'error' && (
              <p className="message-error" data-testid="message-error">
                {message.error ?? 'the reply failed'}; retrying…
              </p>
            )}
          </li>
        ))}
      </ol>

      <p className="typing" data-testid="typing-indicator" hidden={!assistantIsTyping}>
        Assistant is typing…
      </p>

      {error && (
        <p className="error" role="alert" data-testid="error">
          {error}
        </p>
      )}

      <form className="composer" onSubmit={handleSend}>
        <input
          data-testid="chat-input"
          aria-label="Message"
          placeholder="Ask something…"
          autoComplete="off"
          maxLength={4000}
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
        />
        <button type="submit" data-testid="send" disabled={!draft.trim()}>
          Send
        </button>
      </form>
      <div ref={bottom} />
    </main>
  )
}
