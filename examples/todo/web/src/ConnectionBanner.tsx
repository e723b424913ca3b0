import type { StreamStatus } from '@surge/stream-client/react'
import { useEffect, useState } from 'react'

/** A first connection that takes longer than this is worth saying so (no flash on a fast one). */
const SHOW_CONNECTING_AFTER_MS = 800

function message(status: StreamStatus): string {
  switch (status.state) {
    case 'offline':
      return 'You are offline. The list will catch up when the network is back.'
    case 'reconnecting':
      return `Connection lost. Reconnecting… (attempt ${status.attempt})`
    case 'connecting':
      return status.attempt > 0 ? `Cannot reach the server. Retrying… (attempt ${status.attempt})` : 'Connecting…'
    case 'closed':
      // Closed by the server for good: its access was revoked (4003), or the upgrade refused.
      return status.error ? `Disconnected: ${status.error.message}.` : 'Disconnected.'
    default:
      return ''
  }
}

/**
 * The stream connection's state (useStreamStatus), shown while it is not open. The list on
 * screen stays as it was and catches up by itself when the connection is back (Surge resumes
 * from the last change seen instead of reloading everything).
 */
export function ConnectionBanner({ status }: { status: StreamStatus }) {
  const [slowStart, setSlowStart] = useState(false)
  useEffect(() => {
    const timer = setTimeout(() => setSlowStart(true), SHOW_CONNECTING_AFTER_MS)
    return () => clearTimeout(timer)
  }, [])
  const hidden = status.state === 'open' || (status.state === 'connecting' && status.attempt === 0 && !slowStart)
  return (
    <p
      className={`connection connection-${status.state}`}
      role="status"
      data-testid="connection-banner"
      data-state={status.state}
      data-attempt={status.attempt}
      hidden={hidden}
    >
      {hidden ? null : message(status)}
    </p>
  )
}
