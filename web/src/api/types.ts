// Types of the API's answers (see /api/openapi.json).

export type Stage = 'mfa' | 'change_password' | 'enroll_mfa' | 'active'
export type DataScope = 'all' | 'org_and_below' | 'own_org' | 'self' | 'custom'
export type OrgKind = 'province' | 'city' | 'district' | 'street' | 'community' | 'grid' | 'department'

export interface SessionView {
  stage: Stage
  csrf_token: string
  expires_at: number
}

export interface Scope {
  all: boolean
  subtrees: string[]
  orgs: string[]
  owner: string | null
}

export interface Module {
  key: string
  name: string
  description: string
  path: string
  group: string
}

export interface Me {
  id: string
  username: string
  display_name: string
  primary_org_id: string
  primary_org_name: string
  admin_role: 'sysadmin' | 'secadmin' | 'auditor' | null
  permissions: Record<string, Scope>
  modules: Module[]
  csrf_token: string | null
}

export interface Org {
  id: string
  parent_id: string | null
  kind: OrgKind
  code: string
  name: string
  depth: number
  sort: number
}

export interface User {
  id: string
  username: string
  display_name: string
  primary_org_id: string
  primary_org_name: string
  org_ids: string[]
  admin_role: string | null
  status: 'active' | 'disabled'
  mobile: string | null
  email: string | null
  must_change_password: boolean
  totp_enabled: boolean
  locked_until: number | null
  last_login_at: number | null
  created_at: number
  /** End date of a temporary account (unix ms); null: no end date. */
  expires_at: number | null
}

export interface Page<T> {
  items: T[]
  total: number
  page: number
  page_size: number
}

export interface Role {
  id: string
  code: string
  name: string
  description: string
  builtin: boolean
  admin_role: string | null
  mfa_required: boolean
  permissions: string[]
}

export interface Grant {
  id: string
  user_id: string
  role_id: string
  role_code: string
  role_name: string
  scope: DataScope
  anchor_org_id: string
  anchor_org_name: string
  org_ids: string[]
  created_at: number
}

export interface PermInfo {
  code: string
  name: string
  module: string
}

export interface AuditRecord {
  id: number
  seq: number | null
  at: number
  actor_id: string | null
  actor_name: string | null
  actor_org: string | null
  source_ip: string | null
  request_id: string | null
  channel: string
  action: string
  object_type: string | null
  object_id: string | null
  result: 'success' | 'failure' | 'denied'
  reason: string | null
  detail: string | null
}

export interface VerifyReport {
  ok: boolean
  algorithm: string
  records_checked: number
  head_seq: number
  head_hash: string
  unsealed: number
  checkpoints_checked: number
  /** The chain in the database starts after this seq (0: nothing purged). */
  archived_through: number
  problem: { kind: string; seq: number | null; record_id: number | null; message: string } | null
  elapsed_ms: number
}

/** A segment of the audit chain archived to a file. */
export interface AuditArchive {
  first_seq: number
  last_seq: number
  records: number
  prev_hash: string
  last_hash: string
  oldest_at: number
  newest_at: number
  algorithm: string
  file_name: string
  file_digest: string
  file_bytes: number
  created_at: number
  created_by: string | null
  purged_at: number | null
  purged_by: string | null
  intact: boolean
}

export interface ArchiveList {
  items: AuditArchive[]
  retention_days: number
  archive_after_days: number
  auto_purge: boolean
  archived_through: number
}

export interface PurgeReport {
  retention_days: number
  cutoff: number
  purged: AuditArchive[]
  records_removed: number
  kept: {
    first_seq: number
    last_seq: number
    why: 'within_retention' | 'waits_for_older' | 'record_tampered' | 'not_contiguous' | 'file_missing' | 'file_invalid' | 'database_differs'
    reason: string
    purgeable_from: number | null
  }[]
}

export interface ArchiveCheck {
  archive: AuditArchive
  file_present: boolean
  ok: boolean
  report: { records_checked: number; file_digest: string; last_hash: string } | null
  problem: string | null
}

export interface App {
  id: string
  app_id: string
  name: string
  sign_alg: string
  scopes: string[]
  org_id: string
  rate_limit_per_min: number
  enabled: boolean
  created_at: number
}

export const ORG_KIND_NAMES: Record<OrgKind, string> = {
  province: '省',
  city: '市',
  district: '区县',
  street: '街道',
  community: '社区',
  grid: '网格',
  department: '部门',
}

export const SCOPE_NAMES: Record<DataScope, string> = {
  all: '全部数据',
  org_and_below: '本级及下级',
  own_org: '仅本级',
  self: '仅本人',
  custom: '自定义组织',
}

export const ADMIN_ROLE_NAMES: Record<string, string> = {
  sysadmin: '系统管理员',
  secadmin: '安全管理员',
  auditor: '审计管理员',
}

const pad2 = (n: number) => String(n).padStart(2, '0')

/** The calendar day of a time in the browser's time zone, `YYYY-MM-DD`. */
export function formatDay(ms: number): string {
  const d = new Date(ms)
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`
}

export function formatTime(ms: number | null | undefined): string {
  if (!ms) return '—'
  const d = new Date(ms)
  return `${formatDay(ms)} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`
}
