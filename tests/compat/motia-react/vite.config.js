import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// Built once (make); the test serves dist/ at /motia/ of a Surge project's static files (same origin).
export default defineConfig({ plugins: [react()], base: '/motia/',
  build: { outDir: 'dist', emptyOutDir: true },
})
