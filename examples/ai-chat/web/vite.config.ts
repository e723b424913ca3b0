import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The built app (dist/) is served by the Surge server itself, on the same origin as the API and
// the stream WebSocket. `npm run dev` talks to a Surge server on :3000 (see src/server.ts).
export default defineConfig({
  plugins: [react()],
  // @surge/stream-client is linked from clients/js, which has React in its own node_modules (for
  // its tests): one React for the whole page, this app's.
  resolve: { dedupe: ['react', 'react-dom'] },
  build: { outDir: 'dist', emptyOutDir: true },
})
