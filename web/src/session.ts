// Who is logged in: the answer of /me, shared by every page.
import { reactive } from 'vue'
import { get, post, setCsrf } from './api/client'
import type { Me, Module } from './api/types'

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

/** The user's portal modules, grouped as the menu and the home page show them. */
export function moduleGroups(): { name: string; modules: Module[] }[] {
  const out: { name: string; modules: Module[] }[] = []
  for (const m of session.me?.modules ?? []) {
    let g = out.find((x) => x.name === m.group)
    if (!g) out.push((g = { name: m.group, modules: [] }))
    g.modules.push(m)
  }
  return out
}
