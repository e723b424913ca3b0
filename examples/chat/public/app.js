// The chat of one project, live, with who is online. No build step, no dependencies.
//
// Open /#alice-token (or /#bob-token; ?project=project-a picks another chat). The token goes to
// the stream as ?authToken= on the WebSocket, which Surge redacts in its logs.
//
// The stream protocol (the one Motia's clients speak), plus presence (docs/protocol.md, 6):
//   -> {"type": "join", "data": {"streamName", "groupId", "subscriptionId"}}
//   <- {"streamName", "groupId", "event": {"type": "sync", "data": [messages]}}
//   <- {"streamName", "groupId", "id", "event": {"type": "create", "data": message}}
//   <- {"streamName", "groupId", "event": {"type": "event", "event": {"type": "presence",
//        "data": {"action": "sync", "members": [...]} | {"action": "join"|"leave", "member": {...}}}}}
// With Motia's clients: subscription.onEvent('presence', (data) => ...).

const STREAM = 'chatMessage'
const PROJECT = new URLSearchParams(location.search).get('project') || 'project-b'
const TOKEN = location.hash.slice(1)
const USER = TOKEN.replace(/-token$/, '')
const messages = new Map() // id -> message, in creation order
const online = new Map() // member id -> member
const typing = new Map() // userId -> timer
const statusLine = document.getElementById('status')
let retryDelay = 250

document.getElementById('title').textContent = `${PROJECT} chat${USER ? ` (as ${USER})` : ''}`

function renderMessages() {
  document.getElementById('messages').replaceChildren(
    ...[...messages.values()].map((message) => {
      const item = document.createElement('li')
      const who = document.createElement('b')
      who.textContent = message.userId
      item.append(who, document.createTextNode(message.message))
      return item
    }),
  )
}

function renderOnline() {
  document.getElementById('online').replaceChildren(
    ...[...online.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((member) => {
        const item = document.createElement('li')
        item.dataset.id = member.id
        item.textContent = member.meta?.plan ? `${member.id} (${member.meta.plan})` : member.id
        return item
      }),
  )
}

function renderTyping() {
  const names = [...typing.keys()].filter((name) => name !== USER)
  document.getElementById('typing').textContent = names.length ? `${names.join(', ')} typing…` : ''
}

// Presence events are set operations: the order they arrive in always ends in the current set.
function applyPresence(data) {
  if (data.action === 'sync') {
    online.clear()
    for (const member of data.members) online.set(member.id, member)
  } else if (data.action === 'join') {
    online.set(data.member.id, data.member)
  } else if (data.action === 'leave') {
    online.delete(data.member.id)
  }
  renderOnline()
}

function apply(message) {
  if (message.streamName !== STREAM || message.groupId !== PROJECT || !message.event) return
  const { type, data } = message.event
  if (type === 'sync') {
    messages.clear()
    for (const item of data || []) messages.set(item.id, item)
  } else if (type === 'create' || type === 'update') {
    messages.set(message.id, data)
  } else if (type === 'delete') {
    messages.delete(message.id)
  } else if (type === 'event') {
    const event = message.event.event
    if (event.type === 'presence') applyPresence(event.data)
    else if (event.type === 'typing') showTyping(event.data)
    else if (event.type === 'error') statusLine.textContent = `${event.data.code}: ${event.data.message}`
    return
  }
  renderMessages()
}

function showTyping({ userId, isTyping }) {
  clearTimeout(typing.get(userId))
  if (isTyping) typing.set(userId, setTimeout(() => showTyping({ userId, isTyping: false }), 3000))
  else typing.delete(userId)
  renderTyping()
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const query = TOKEN ? `?authToken=${encodeURIComponent(TOKEN)}` : ''
  const socket = new WebSocket(`${scheme}://${location.host}/${query}`)
  socket.onopen = () => {
    retryDelay = 250
    statusLine.textContent = 'live'
    const subscriptionId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)
    socket.send(JSON.stringify({ type: 'join', data: { streamName: STREAM, groupId: PROJECT, subscriptionId } }))
  }
  socket.onmessage = (frame) => apply(JSON.parse(frame.data))
  socket.onclose = () => {
    // The server restarted or the network dropped: join again; the syncs replace both lists.
    statusLine.textContent = 'reconnecting…'
    online.clear()
    renderOnline()
    setTimeout(connect, retryDelay)
    retryDelay = Math.min(retryDelay * 2, 5000)
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!response.ok) statusLine.textContent = `${method} ${path}: ${response.status}`
  return response
}

const input = document.getElementById('message')
let lastTyping = 0
input.addEventListener('input', () => {
  if (!USER || Date.now() - lastTyping < 1000) return
  lastTyping = Date.now()
  api('POST', `/chat/${encodeURIComponent(PROJECT)}/typing`, { userId: USER, isTyping: true })
})

document.getElementById('new-message').addEventListener('submit', async (event) => {
  event.preventDefault()
  const text = input.value.trim()
  if (!text || !USER) return
  const response = await api('POST', `/chat/${encodeURIComponent(PROJECT)}`, { userId: USER, message: text })
  if (response.ok) input.value = '' // the list updates from the stream, not from the response
})

connect()
