// The live unread count: one EventSource per page load on /api/v1/notify/stream, reconnecting
// by itself (EventSource retries on errors); falls back to the count endpoint when closed.
import { reactive } from 'vue'
import { get } from '../api/client'

export const unread = reactive({ count: 0 })
let source: EventSource | null = null

export function connectUnread() {
  if (source || typeof EventSource === 'undefined') return
  source = new EventSource('/api/v1/notify/stream', { withCredentials: true })
  source.addEventListener('unread', (e) => {
    try {
      unread.count = JSON.parse((e as MessageEvent).data).unread
    } catch {
      /* ignore a malformed event */
    }
  })
}

export function disconnectUnread() {
  source?.close()
  source = null
  unread.count = 0
}

export async function refreshUnread() {
  try {
    unread.count = (await get<{ unread: number }>('/notify/unread')).unread
  } catch {
    /* the badge is best effort */
  }
}
