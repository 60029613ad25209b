// Who is logged in: the answer of /me, shared by every page.
import { reactive } from 'vue'
import { get, post, setCsrf } from './api/client'
import type { Me } from './api/types'

export const session = reactive<{ me: Me | null }>({ me: null })

export async function loadMe(): Promise<Me> {
  const me = await get<Me>('/me')
  if (me.csrf_token) setCsrf(me.csrf_token)
  session.me = me
  return me
}

export function can(permission: string): boolean {
  const scope = session.me?.permissions[permission]
  return !!scope && (scope.all || scope.subtrees.length > 0 || scope.orgs.length > 0 || !!scope.owner)
}

export async function logout() {
  try {
    await post('/auth/logout')
  } finally {
    session.me = null
    setCsrf('')
  }
}
