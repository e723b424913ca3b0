import {
  useCallback,
  useContext,
  useEffect,
  useState,
  useSyncExternalStore,
  type DependencyList,
} from 'react'
import type { StreamGroupSubscription, StreamItemSubscription, StreamSubscription } from '../subscription.js'
import type { StreamStatus } from '../types.js'
import { MotiaStreamContext } from './context.js'

/**
 * The stream of the nearest provider.
 *
 * @example
 * ```tsx
 * const { stream } = useMotiaStream()
 * ```
 */
export function useMotiaStream() {
  return useContext(MotiaStreamContext)
}

export type StreamGroupArgs<TData extends { id: string }> = {
  streamName: string
  groupId: string
  sortKey?: keyof TData
  setData?: (data: TData[]) => void
}

/**
 * A group of items from a stream, kept current (Motia's `useStreamGroup`, same arguments).
 * Returns `data`, `event` (the subscription, for `useStreamEventHandler`), and for windowed
 * groups `hasMore` and `loadOlder(limit?)`; `isSynced` once the first sync arrived.
 *
 * @example
 * ```tsx
 * const { data } = useStreamGroup<Todo>({ streamName: 'todo', groupId: 'inbox' })
 * ```
 */
export function useStreamGroup<TData extends { id: string }>(args?: StreamGroupArgs<TData>) {
  const { stream } = useMotiaStream()
  const [data, setData] = useState<TData[]>([])
  const [subscription, setSubscription] = useState<StreamGroupSubscription<TData> | null>(null)
  const [isSynced, setSynced] = useState(false)
  const [hasMore, setHasMore] = useState(false)
  const { streamName, groupId, sortKey, setData: setDataCallback } = args ?? {}

  useEffect(() => {
    // A stream the server ended (access revoked: its status says why) takes no subscriptions.
    if (!streamName || !groupId || !stream || stream.status.state === 'closed') return
    const created = stream.subscribeGroup<TData>(streamName, groupId, sortKey)
    created.addChangeListener((state) => {
      const items = state ?? []
      setData(items)
      setSynced(created.isSynced)
      setHasMore(created.hasMore())
      setDataCallback?.(items)
    })
    setSubscription(created)
    return () => {
      created.close()
      setSubscription(null)
      setData([])
      setSynced(false)
      setHasMore(false)
    }
  }, [stream, streamName, groupId, sortKey, setDataCallback])

  const loadOlder = useCallback(
    (limit?: number) => (subscription ? subscription.loadOlder(limit) : Promise.resolve([] as TData[])),
    [subscription],
  )

  return { data, event: subscription as StreamGroupSubscription<TData> | null, isSynced, hasMore, loadOlder }
}

export type StreamItemArgs = {
  streamName: string
  groupId: string
  id?: string
}

/**
 * One item from a stream, kept current (Motia's `useStreamItem`): `data` is undefined until the
 * sync, null when the item does not exist.
 */
export function useStreamItem<TData extends { id: string }>(args?: StreamItemArgs) {
  const { stream } = useMotiaStream()
  const [data, setData] = useState<TData | null | undefined>()
  const [event, setEvent] = useState<StreamItemSubscription<TData> | null>(null)
  const { streamName, groupId, id } = args ?? {}

  useEffect(() => {
    if (!streamName || !groupId || !id || !stream || stream.status.state === 'closed') return
    const subscription = stream.subscribeItem<TData>(streamName, groupId, id)
    subscription.addChangeListener((state) => setData(state))
    setEvent(subscription)
    return () => {
      setData(undefined)
      setEvent(null)
      subscription.close()
    }
  }, [stream, streamName, groupId, id])

  return { data, event }
}

type UseStreamEventHandler = {
  event: StreamSubscription<any, any> | null // eslint-disable-line @typescript-eslint/no-explicit-any
  type: string
  listener: (event: any) => void // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * Listen to the custom events (`send()`) of a subscription, as Motia's hook.
 *
 * @example
 * ```tsx
 * useStreamEventHandler({ event, type: 'typing', listener: onTyping }, [onTyping])
 * ```
 */
export function useStreamEventHandler({ event, type, listener }: UseStreamEventHandler, dependencies: DependencyList) {
  useEffect(() => {
    if (!event) return
    event.onEvent(type, listener)
    return () => event.offEvent(type, listener)
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [event, type, ...dependencies])
}

const CONNECTING: StreamStatus = Object.freeze({ state: 'connecting', attempt: 0, retryAt: null, disconnectedAt: null })
const noop = () => () => undefined

/**
 * The connection's status, for an "offline / reconnecting" banner: `state` (`connecting`,
 * `open`, `reconnecting`, `offline`, `closed`), `attempt` (failed attempts since it was last
 * open), `retryAt` and `disconnectedAt`; on a `closed` status the server caused, `error` (an
 * `AccessRevokedError` after `streams.revoke`: sign in again, then remount the provider with a
 * new `authToken`).
 *
 * @example
 * ```tsx
 * const { state, attempt } = useStreamStatus()
 * if (state === 'reconnecting') return <p role="status">Reconnecting… (attempt {attempt})</p>
 * ```
 */
export function useStreamStatus(): StreamStatus {
  const { stream } = useMotiaStream()
  const subscribe = useCallback(
    (onChange: () => void) => (stream ? stream.onStatusChange(onChange) : noop()),
    [stream],
  )
  const snapshot = () => (stream ? stream.status : CONNECTING)
  return useSyncExternalStore(subscribe, snapshot, snapshot)
}
