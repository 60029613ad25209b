import { describe, expect, it } from 'vitest'
import { buildTree } from './orgtree'
import type { Org } from './api/types'

const org = (id: string, parent: string | null, name: string): Org => ({ id, parent_id: parent, kind: 'street', code: id, name, depth: 0, sort: 0 })

describe('buildTree', () => {
  it('nests children and keeps orphans (parents outside the scope) as roots', () => {
    const tree = buildTree([org('a', null, '济南市'), org('b', 'a', '历下区'), org('c', 'zz', '解放路街道')])
    expect(tree.map((n) => n.label)).toEqual(['济南市', '解放路街道'])
    expect(tree[0].children[0].label).toBe('历下区')
  })
})
