/**
 * @surge/stream-client/react: the hooks of `@motiadev/stream-client-react` (same names, same
 * arguments: switching is one import) on Surge's client, plus `useStreamStatus` for a
 * connection banner and `loadOlder` / `hasMore` on windowed groups.
 */

export {
  AccessRevokedError,
  Stream,
  StreamGroupSubscription,
  StreamItemSubscription,
  StreamSubscription,
  UpgradeRefusedError,
} from '../index.js'
export type { StreamOptions, StreamStatus, ConnectionState, Recovery, StreamRefusal } from '../index.js'
export { MotiaStreamContext, type MotiaStreamContextType } from './context.js'
export {
  useMotiaStream,
  useStreamEventHandler,
  useStreamGroup,
  useStreamItem,
  useStreamStatus,
  type StreamGroupArgs,
  type StreamItemArgs,
} from './hooks.js'
export { MotiaStreamProvider, SurgeStreamProvider, type MotiaStreamProviderProps } from './provider.js'
