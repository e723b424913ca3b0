/**
 * Why a `Stream` stopped by itself (its status is `closed` with `error` set), as Surge's Python
 * client's `AccessRevoked` and `UpgradeRefused`. Without `retryRefused` the stream does not
 * reconnect after either: pending page requests reject with the error, later subscribes throw it.
 */

/** WebSocket close codes the client acts on (Surge's `surge.protocol.codes.CloseCode`). */
export const CloseCode = {
  /** The connection's token expired: the client reconnects (asking a token function again). */
  TOKEN_EXPIRED: 4001,
  /** The server revoked this connection's access (`streams.revoke`): do not reconnect with the same credentials. */
  ACCESS_REVOKED: 4003,
  /** The client kept sending over its rate limits: reconnect later, slower (the backoff is not reset). */
  RATE_LIMITED: 4029,
} as const

/** The server closed the connection with 4003: the credentials it was opened with are revoked. */
export class AccessRevokedError extends Error {
  /** The close code (4003). */
  readonly code: number
  /** The close reason the server sent (Surge sends `access revoked`). */
  readonly reason: string

  constructor(code: number, reason = '') {
    super(`access revoked by the server (${code}${reason ? `: ${reason}` : ''})`)
    this.name = 'AccessRevokedError'
    this.code = code
    this.reason = reason
  }
}

/**
 * The server answered the WebSocket upgrade with HTTP 401 (a refused token) or 403 (a foreign
 * origin). Only seen where the WebSocket implementation reports the status (the `ws` package
 * does); a browser's WebSocket shows a refused upgrade as a close 1006 before open, like a
 * server that is down, and the client keeps retrying.
 */
export class UpgradeRefusedError extends Error {
  /** The HTTP status of the answer. */
  readonly status: number

  constructor(status: number) {
    super(`WebSocket upgrade refused with HTTP ${status}`)
    this.name = 'UpgradeRefusedError'
    this.status = status
  }
}

/** What a `closed` status's `error` may be. */
export type StreamRefusal = AccessRevokedError | UpgradeRefusedError
