import { API_BASE } from './server'
import type { Message } from './types'

/**
 * POST /chat/:conversation. The server answers 202 with the stored message at once; the message
 * and then the reply reach the page through the stream subscription, never from this response.
 */
export async function sendMessage(conversation: string, text: string): Promise<Message> {
  const response = await fetch(`${API_BASE}/chat/${encodeURIComponent(conversation)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  })
  if (!response.ok) {
    throw new Error(`sending failed: ${response.status}`)
  }
  return (await response.json()) as Message
}
