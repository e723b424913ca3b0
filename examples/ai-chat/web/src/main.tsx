import { MotiaStreamProvider } from '@surge/stream-client/react'
import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { App } from './App'
import { STREAM_ADDRESS } from './server'
import './styles.css'

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <MotiaStreamProvider address={STREAM_ADDRESS}>
      <App />
    </MotiaStreamProvider>
  </StrictMode>,
)
