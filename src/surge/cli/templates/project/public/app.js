// The todo list, live: joins the `todo` stream's `inbox` group over a plain WebSocket and
// renders every change; the form and buttons call the API steps. No build step, no dependencies.
//
// The stream protocol (the one Motia's clients speak):
//   -> {"type": "join", "data": {"streamName", "groupId", "subscriptionId"}}
//   <- {"timestamp", "streamName", "groupId", "event": {"type": "sync", "data": [items]}}
//   <- {"timestamp", "streamName", "groupId", "id", "event": {"type": "create"|"update"|"delete", "data": item}}
// For React or other frameworks, use @motiadev/stream-client-browser or -react instead.

const STREAM = 'todo'
const GROUP = 'inbox'
const todos = new Map() // id -> todo, in creation order
const list = document.getElementById('todos')
const statusLine = document.getElementById('status')
let retryDelay = 250

function render() {
  list.replaceChildren(
    ...[...todos.values()].map((todo) => {
      const item = document.createElement('li')
      item.dataset.id = todo.id
      item.classList.toggle('done', Boolean(todo.completedAt))
      const text = document.createElement('span')
      text.textContent = todo.description
      const toggle = document.createElement('button')
      toggle.textContent = todo.completedAt ? 'Undo' : 'Done'
      toggle.onclick = () => api('PUT', `/todo/${encodeURIComponent(todo.id)}`, { completed: !todo.completedAt })
      const remove = document.createElement('button')
      remove.textContent = 'Delete'
      remove.onclick = () => api('DELETE', `/todo/${encodeURIComponent(todo.id)}`)
      item.append(text, toggle, remove)
      return item
    }),
  )
}

function apply(message) {
  if (message.streamName !== STREAM || message.groupId !== GROUP || !message.event) return
  const { type, data } = message.event
  if (type === 'sync') {
    todos.clear()
    for (const todo of data || []) todos.set(todo.id, todo)
  } else if (type === 'create' || type === 'update') {
    todos.set(message.id, data)
  } else if (type === 'delete') {
    todos.delete(message.id)
  } else {
    return // ephemeral events and errors: nothing to render here
  }
  render()
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const socket = new WebSocket(`${scheme}://${location.host}/`)
  socket.onopen = () => {
    retryDelay = 250
    statusLine.textContent = 'live'
    const subscriptionId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)
    socket.send(JSON.stringify({ type: 'join', data: { streamName: STREAM, groupId: GROUP, subscriptionId } }))
  }
  socket.onmessage = (frame) => apply(JSON.parse(frame.data))
  socket.onclose = () => {
    // The server restarted or the network dropped: join again; the sync replaces the list.
    statusLine.textContent = 'reconnecting…'
    setTimeout(connect, retryDelay)
    retryDelay = Math.min(retryDelay * 2, 5000)
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!response.ok) statusLine.textContent = `${method} ${path}: ${response.status}`
  return response
}

document.getElementById('new-todo').addEventListener('submit', async (event) => {
  event.preventDefault()
  const input = document.getElementById('description')
  const description = input.value.trim()
  if (!description) return
  const response = await api('POST', '/todo', { description })
  if (response.ok) input.value = '' // the list updates from the stream, not from the response
})

connect()
