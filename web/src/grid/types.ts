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
