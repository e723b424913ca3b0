import { useEffect, useMemo, useRef, useState, type PropsWithChildren } from 'react'
import { Stream, type AuthToken, type StreamOptions } from '../stream.js'
import { MotiaStreamContext } from './context.js'

export type MotiaStreamProviderProps = PropsWithChildren<{
  /**
   * The address of the stream server.
   *
   * @example
   * ```tsx
   * <MotiaStreamProvider address="ws://localhost:3000">
   *   <App />
   * </MotiaStreamProvider>
   * ```
   */
  address: string
  /** WebSocket subprotocols, as Motia's provider (e.g. `['Authorization', token]`). */
  protocols?: string | string[] | undefined
  /** An auth token (or a function giving one at every connect); see `StreamOptions.authToken`. */
  authToken?: AuthToken
  /**
   * The rest of the stream's options (backoff, `authTokenIn`, timeouts...). Read when the
   * stream is created: a change of `address`, `protocols` or `authToken` creates a new one.
   */
  options?: Omit<StreamOptions, 'protocols' | 'authToken'>
}>

/**
 * Creates one `Stream` for its subtree (Motia's `MotiaStreamProvider`, same props), closed when
 * the provider unmounts or its address, protocols or token change.
 */
export function MotiaStreamProvider({
  children,
  address,
  protocols,
  authToken,
  options,
}: MotiaStreamProviderProps) {
  const [stream, setStream] = useState<Stream | null>(null)
  const optionsRef = useRef(options)
  optionsRef.current = options
  // An array literal in the props is a new array every render: compare by content.
  const protocolsKey = protocols === undefined ? undefined : JSON.stringify(protocols)

  useEffect(() => {
    const created = new Stream(address, {
      ...optionsRef.current,
      protocols: protocolsKey === undefined ? undefined : (JSON.parse(protocolsKey) as string | string[]),
      authToken,
    })
    setStream(created)
    return () => created.close()
  }, [address, protocolsKey, authToken])

  const contextValue = useMemo(() => ({ stream }), [stream])
  return <MotiaStreamContext.Provider value={contextValue}>{children}</MotiaStreamContext.Provider>
}

/** The same provider under Surge's name. */
export const SurgeStreamProvider = MotiaStreamProvider
