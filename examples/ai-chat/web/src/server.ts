// Where the Surge server is. The built app is served by Surge itself, so the API and the stream
// WebSocket are on the page's own origin. Under `npm run dev` (Vite on its own port) the server is
// http://localhost:3000, or VITE_SURGE_URL; Surge's CORS is open by default.
const devServer: string = import.meta.env.VITE_SURGE_URL ?? 'http://localhost:3000'

export const API_BASE: string = import.meta.env.DEV ? devServer : ''

export const STREAM_ADDRESS: string = import.meta.env.DEV
  ? devServer.replace(/^http/, 'ws')
  : `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`
