import { createContext } from 'react'
import type { Stream } from '../stream.js'

export type MotiaStreamContextType = {
  stream: Stream | null
}

/** The stream of the nearest `MotiaStreamProvider` (null before its first effect ran). */
export const MotiaStreamContext = createContext<MotiaStreamContextType>({ stream: null })
