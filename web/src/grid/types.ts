// Types of the grid platform API (/api/v1/grid/...).

export interface OrgRef {
  id: string
  code: string
  name: string
  kind: string
}

export interface Category {
  id: string
  parent_id: string | null
  code: string
  name: string
  kind: 'component' | 'event' | 'governance'
  owner_org_id: string | null
  owner_org_name: string | null
  urgencies: string[]
  limits: Record<string, string>
  keywords: string
  sort: number
  enabled: boolean
}

export interface Suggestion {
  category: Category
  score: number
  reasons: string[]
}

export interface Case {
  id: string
  case_no: string
  source: string
  external_id: string | null
  title: string
  description: string
  category_id: string
  category_name: string
  category_code: string
  urgency: string
  lon: number | null
  lat: number | null
  address: string | null
  grid_id: string | null
  grid_name: string | null
  reporter: string
  department_id: string | null
  department_name: string | null
  stage: string
  status: string
  duplicate_of: string | null
  possible_duplicate_of: string | null
  instance_id: string | null
  stage_due_at: number | null
  flag: 'normal' | 'due_soon' | 'overdue'
  rework_count: number
  created_at: number
  accepted_at: number | null
  dispatched_at: number | null
  handled_at: number | null
  verified_at: number | null
  closed_at: number | null
  updated_at: number
}

export interface CaseStep {
  seq: number
  at: number
  action: string
  stage: string
  actor: string | null
  note: string | null
}

export interface Attachment {
  id: string
  case_id: string | null
  stage: string | null
  name: string
  mime: string
  size: number
  uploaded_by: string
  created_at: number
}

export interface CaseDetail extends Case {
  timeline: CaseStep[]
  attachments: Attachment[]
  actions: string[]
  platforms: PlatformLink[]
  deliveries: Delivery[]
  /** What failed the integrity check, when the stored case was changed outside the platform. */
  integrity_violation?: string
}

export interface Mapping {
  fields: Record<string, string>
  categories: Record<string, string>
  constants: Record<string, unknown>
  paths: { dispatch: string; status: string; query: string }
  ack: { code_field: string; ok_codes: string[]; ticket_field: string; message_field: string }
  crs: string
}

export interface Platform {
  id: string
  code: string
  name: string
  kind: string
  org_id: string
  org_name: string
  app_id: string
  endpoint: string
  out_key: string
  sign_alg: string
  mapping: Mapping
  timeout_ms: number
  alert_after_minutes: number
  enabled: boolean
  created_at: number
  updated_at: number
  pending: number
  oldest_pending_at: number | null
  overdue: number
  delivered: number
  last_error: string | null
}

export interface Delivery {
  id: string
  platform_id: string
  platform_name: string
  case_id: string
  case_no: string
  seq: number
  kind: 'dispatch' | 'status'
  status: string | null
  idem_key: string
  state: 'pending' | 'delivered'
  overdue: boolean
  attempts: number
  next_at: number
  last_error: string | null
  last_attempt_at: number | null
  ticket: string | null
  created_at: number
  delivered_at: number | null
}

export interface PlatformLink {
  platform_id: string
  platform_name: string
  direction: 'in' | 'out'
  remote_state: string | null
  remote_note: string | null
  remote_at: number | null
  ticket: string | null
}

export interface Reconciliation {
  id: string
  platform_id: string
  started_at: number
  finished_at: number | null
  checked: number
  matched: number
  advanced: number
  resent: number
  detail: { case_no: string; ours: string; theirs: string; action: string }[]
  error: string | null
}

export const PLATFORM_KINDS: Record<string, string> = {
  city_management: '数字城管',
  governance: '综治',
  hotline: '12345热线',
  other: '其他平台',
}

/** What a message to a platform says. */
export const MESSAGE_STATUSES: Record<string, string> = {
  accepted: '已立案',
  rejected: '不予立案',
  dispatched: '已派遣',
  handled: '办结反馈',
  verified: '核实反馈：通过',
  verify_failed: '核实反馈：不通过',
  closed: '结案',
}

/** What a platform told us. */
export const REMOTE_STATES: Record<string, string> = {
  received: '已接收',
  accepted: '已受理',
  returned: '已退回',
  handled: '已办结',
  verified: '核实通过',
  verify_failed: '核实不通过',
}

export interface CasePoint {
  id: string
  case_no: string
  title: string
  lon: number
  lat: number
  stage: string
  flag: string
  urgency: string
}

export interface Rule {
  id: string
  name: string
  category_id: string | null
  category_name: string | null
  area_org_id: string | null
  area_name: string | null
  department_id: string | null
  department_name: string | null
  target_level: string | null
  priority: number
  enabled: boolean
}

export interface Route {
  department: OrgRef | null
  grid: OrgRef | null
  rule: Rule | null
  by: 'rule' | 'owner' | 'dispatcher'
  explanation: string
}

export interface FeatureProblem {
  feature: number | null
  code: string | null
  message: string
}

export interface GeometryProblem {
  kind: string
  codes: string[]
  area_m2: number
  message: string
}

export interface ImportReport {
  features: number
  imported: number
  feature_problems: FeatureProblem[]
  geometry_problems: GeometryProblem[]
  new_orgs: NewArea[]
}

export interface NewArea {
  code: string
  name: string
  level: string
  parent_code: string
  id?: string
}

export const SOURCES: Record<string, string> = {
  patrol: '网格巡查',
  hotline: '12345热线',
  citizen: '随手拍',
  video: '视频监控',
  iot: '物联感知',
  opinion: '舆情',
  third_party: '第三方平台',
}

export const STAGES: Record<string, string> = {
  report: '上报',
  accept: '待立案',
  dispatch: '待派遣',
  handle: '处置中',
  extension: '延期审批',
  verify: '待核查',
  closed: '已结案',
  rejected: '不予立案',
}

export const STATUSES: Record<string, string> = { open: '办理中', closed: '已结案', rejected: '不予立案', merged: '已合并' }

export const URGENCIES: Record<string, string> = { normal: '一般', urgent: '紧急', critical: '特急' }

export const ACTIONS: Record<string, string> = {
  report: '上报',
  accept: '立案',
  reject: '不予立案',
  merge: '合并',
  dispatch: '派遣',
  handle: '处置反馈',
  decline: '退回派遣',
  request_extension: '申请延期',
  extension_granted: '同意延期',
  extension_denied: '不同意延期',
  decide_extension: '延期审批',
  verify: '核查',
  verify_pass: '核查通过',
  verify_fail: '核查不通过（返工）',
  close: '结案',
  close_on_spot: '自行处置结案',
}

export const KINDS: Record<string, string> = { component: '部件', event: '事件', governance: '综治' }

export const STAGE_LIMITS: Record<string, string> = { accept: '立案', dispatch: '派遣', handle: '处置', verify: '核查' }

/** "P2D" → "2个工作日", "PT4H" → "4小时". */
export function describeDuration(d: string | undefined): string {
  if (!d) return '—'
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$/.exec(d)
  if (!m) return d
  const parts: string[] = []
  if (m[1]) parts.push(`${m[1]}个工作日`)
  if (m[2]) parts.push(`${m[2]}小时`)
  if (m[3]) parts.push(`${m[3]}分钟`)
  return parts.join('') || d
}

export const FLAG_COLORS: Record<string, string> = { overdue: '#d93026', due_soon: '#e6a23c', normal: '#2d6cdf', closed: '#3f9b4f' }
