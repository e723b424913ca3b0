// A page on Motia's own React hooks, unchanged, against a Surge server: the group and item hooks
// and the event handler, as a Motia front end uses them. The stream address comes from ?ws=, the
// item to watch from ?item= (tests/compat/test_motia_react_browser.py drives it).
import {
  MotiaStreamProvider,
  useStreamEventHandler,
  useStreamGroup,
  useStreamItem,
} from '@motiadev/stream-client-react'
import { StrictMode, useState } from 'react'
import { createRoot } from 'react-dom/client'

const params = new URLSearchParams(window.location.search)

function Todos() {
  const { data, event } = useStreamGroup({ streamName: 'todo', groupId: 'inbox' })
  const [typing, setTyping] = useState([])
  useStreamEventHandler(
    { event, type: 'typing', listener: (e) => setTyping((seen) => [...seen, e.userId]) },
    [],
  )
  return (
    <section>
      <ul id="todos" data-subscribed={event ? 'yes' : 'no'}>
        {data.map((todo) => (
          <li key={todo.id} data-id={todo.id} data-done={String(Boolean(todo.completedAt))}>
            {todo.description}
          </li>
        ))}
      </ul>
      <p id="typing">{typing.join(',')}</p>
    </section>
  )
}

function Item({ id }) {
  const { data } = useStreamItem({ streamName: 'todo', groupId: 'inbox', id })
  return <p id="item">{data === undefined ? 'loading' : data === null ? 'none' : data.description}</p>
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <MotiaStreamProvider address={params.get('ws')}>
      <Todos />
      {params.get('item') ? <Item id={params.get('item')} /> : null}
    </MotiaStreamProvider>
  </StrictMode>,
)
