import { useStreamEventHandler, type useStreamGroup } from '@surge/stream-client/react'
import { useCallback, useEffect, useRef, useState } from 'react'
import type { TypingEvent } from '../types'

/** The subscription object `useStreamGroup` returns as `event` (it has onEvent/offEvent). */
type Subscription = ReturnType<typeof useStreamGroup>['event']

/** How often, at most, "still typing" is sent while the user keeps typing. */
const SEND_EVERY_MS = 1000
/** After this long without a keystroke the user is no longer typing. */
const IDLE_AFTER_MS = 2000
/** A typist we hear nothing more from is forgotten after this long (a lost "stopped" event). */
const FORGET_AFTER_MS = 3000

/** A random id for this tab: every tab is its own "user" for the typing indicator. */
export function newUserId(): string {
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  return `user-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`
}

/**
 * Tells the others that this tab is typing: `onInput()` on every keystroke sends `isTyping: true`
 * at most once a second; `stop()` (or two idle seconds) sends `isTyping: false`.
 */
export function useTypingNotifier(
  send: (userId: string, isTyping: boolean) => Promise<unknown>,
  userId: string,
) {
  const isTyping = useRef(false)
  const lastSentAt = useRef(0)
  const idleTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined)
  const sending = useRef<Promise<unknown>>(Promise.resolve())

  const post = useCallback(
    (typing: boolean) => {
      // One request at a time, so a "stopped" can never overtake the "typing" before it.
      // Best effort: a lost typing event only means a stale indicator for a few seconds.
      sending.current = sending.current.then(() => send(userId, typing).catch(() => undefined))
    },
    [send, userId],
  )

  const stop = useCallback(() => {
    clearTimeout(idleTimer.current)
    if (isTyping.current) {
      isTyping.current = false
      post(false)
    }
  }, [post])

  const onInput = useCallback(() => {
    const now = Date.now()
    if (!isTyping.current || now - lastSentAt.current >= SEND_EVERY_MS) {
      isTyping.current = true
      lastSentAt.current = now
      post(true)
    }
    clearTimeout(idleTimer.current)
    idleTimer.current = setTimeout(stop, IDLE_AFTER_MS)
  }, [post, stop])

  useEffect(() => () => clearTimeout(idleTimer.current), [])

  return { onInput, stop }
}

/**
 * Whether someone else is typing, from the `typing` events of a group subscription
 * (`subscription.onEvent('typing', ...)`). This tab's own events are ignored.
 */
export function useTypingIndicator(
  subscription: Subscription,
  ownUserId: string,
): boolean {
  const [typists, setTypists] = useState<ReadonlySet<string>>(new Set())
  const timers = useRef(new Map<string, ReturnType<typeof setTimeout>>())

  const forget = useCallback((userId: string) => {
    clearTimeout(timers.current.get(userId))
    timers.current.delete(userId)
    setTypists((current) => {
      if (!current.has(userId)) return current
      const next = new Set(current)
      next.delete(userId)
      return next
    })
  }, [])

  const onTyping = useCallback(
    (event: TypingEvent) => {
      if (!event || typeof event.userId !== 'string' || event.userId === ownUserId) return
      if (!event.isTyping) {
        forget(event.userId)
        return
      }
      clearTimeout(timers.current.get(event.userId))
      timers.current.set(
        event.userId,
        setTimeout(() => forget(event.userId), FORGET_AFTER_MS),
      )
      setTypists((current) => (current.has(event.userId) ? current : new Set(current).add(event.userId)))
    },
    [ownUserId, forget],
  )

  useStreamEventHandler({ event: subscription, type: 'typing', listener: onTyping }, [onTyping])

  useEffect(() => {
    const pending = timers.current
    return () => pending.forEach((timer) => clearTimeout(timer))
  }, [])

  return typists.size > 0
}
