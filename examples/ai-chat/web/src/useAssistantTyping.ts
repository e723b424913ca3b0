import { useStreamEventHandler, type useStreamGroup } from '@surge/stream-client/react'
import { useCallback, useState } from 'react'
import type { Message, TypingEvent } from './types'

/** The subscription object `useStreamGroup` returns as `event` (it has onEvent/offEvent). */
type Subscription = ReturnType<typeof useStreamGroup>['event']

/**
 * Whether the assistant is typing, from the conversation's `typing` events: shown from
 * `isTyping: true` until `isTyping: false` for that reply, or until the reply itself is no longer
 * `streaming` (a lost "stopped" event, e.g. when the server died, must not leave it on forever).
 */
export function useAssistantTyping(subscription: Subscription, messages: Message[]): boolean {
  const [typing, setTyping] = useState<ReadonlySet<string>>(new Set())

  const onTyping = useCallback((event: TypingEvent) => {
    if (!event || typeof event.replyId !== 'string') return
    setTyping((current) => {
      if (event.isTyping === current.has(event.replyId)) return current
      const next = new Set(current)
      if (event.isTyping) next.add(event.replyId)
      else next.delete(event.replyId)
      return next
    })
  }, [])

  useStreamEventHandler({ event: subscription, type: 'typing', listener: onTyping }, [onTyping])

  const finished = new Set(messages.filter((m) => m.status !== 'streaming').map((m) => m.id))
  return [...typing].some((replyId) => !finished.has(replyId))
}
