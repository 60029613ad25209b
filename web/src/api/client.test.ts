import { describe, expect, it } from 'vitest'
import { describeError, query } from './client'

describe('api client helpers', () => {
  it('describes known codes in Chinese and keeps the detail', () => {
    expect(describeError('account_locked', 'locked for 30 minutes')).toBe('登录失败次数过多，账号已临时锁定（locked for 30 minutes）')
    expect(describeError('something_new', 'detail')).toBe('detail')
  })
  it('builds query strings from set values only', () => {
    expect(query({ q: '张', page: 2, org_id: '', x: undefined })).toBe('?q=%E5%BC%A0&page=2')
    expect(query({})).toBe('')
  })
})
