// The org list as a tree for el-tree and el-tree-select.
import { ref } from 'vue'
import { get } from './api/client'
import { ORG_KIND_NAMES, type Org } from './api/types'

export interface OrgNode {
  id: string
  label: string
  value: string
  org: Org
  children: OrgNode[]
}

/** Builds the forest of visible orgs; orgs whose parent is not visible become roots. */
export function buildTree(orgs: Org[]): OrgNode[] {
  const nodes = new Map<string, OrgNode>()
  for (const o of orgs) {
    nodes.set(o.id, { id: o.id, value: o.id, label: `${o.name}`, org: o, children: [] })
  }
  const roots: OrgNode[] = []
  for (const o of orgs) {
    const n = nodes.get(o.id)!
    const parent = o.parent_id ? nodes.get(o.parent_id) : undefined
    if (parent) parent.children.push(n)
    else roots.push(n)
  }
  return roots
}

export function kindName(o: Org): string {
  return ORG_KIND_NAMES[o.kind] ?? o.kind
}

export function useOrgs() {
  const orgs = ref<Org[]>([])
  const tree = ref<OrgNode[]>([])
  const byId = ref(new Map<string, Org>())
  async function reload() {
    orgs.value = await get<Org[]>('/orgs')
    tree.value = buildTree(orgs.value)
    byId.value = new Map(orgs.value.map((o) => [o.id, o]))
  }
  return { orgs, tree, byId, reload }
}
