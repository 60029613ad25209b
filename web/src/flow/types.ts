// Types of the workflow API (/api/v1/flow).

export interface DefinitionSummary {
  id: string
  key: string
  version: number
  name: string
  deployed_at: number
  deployed_by: string | null
  active_instances: number
}

export interface Definition extends DefinitionSummary {
  xml: string
  forms: Record<string, FormSchema>
}

export type FormSchema = { components: unknown[]; [k: string]: unknown }

export interface ModelProblem {
  line: number
  element: string | null
  message: string
}

export interface Instance {
  id: string
  definition_id: string
  process_key: string
  process_name: string
  version: number
  business_key: string | null
  status: 'active' | 'completed' | 'terminated'
  incidents: number
  started_at: number
  ended_at: number | null
  started_by: string | null
  parent_id: string | null
}

export interface TimelineItem {
  token: number
  element_id: string
  element_name: string
  element_type: string
  started_at: number
  ended_at: number | null
  duration_ms: number | null
  state: 'active' | 'completed' | 'cancelled' | 'incident'
  started_by: string | null
  ended_by: string | null
  variables: string[]
  message: string | null
}

export interface Incident {
  id: string
  instance_id: string
  process_key: string
  business_key: string | null
  token: number
  element_id: string
  message: string
  created_at: number
  resolved_at: number | null
  resolution: string | null
}

export interface InstanceDetail extends Instance {
  variables: Record<string, unknown>
  active_elements: string[]
  completed_elements: string[]
  taken_flows: string[]
  timeline: TimelineItem[]
  incident_list: Incident[]
  xml: string
}

export interface Task {
  id: string
  instance_id: string
  element_id: string
  name: string
  process_key: string
  process_name: string
  business_key: string | null
  assignee: string | null
  owner: string | null
  candidate_users: string[]
  candidate_groups: string[]
  state: 'open' | 'completed' | 'cancelled'
  priority: number
  due_at: number | null
  follow_up_at: number | null
  form_key: string | null
  created_at: number
  completed_at: number | null
  completed_by: string | null
  urge_count: number
  flag: 'normal' | 'due_soon' | 'overdue'
}

export interface TaskView extends Task {
  form: FormSchema | null
  variables: Record<string, unknown>
  send_back_targets: { element_id: string; name: string }[]
  countersign: boolean
}

export interface PageOf<T> {
  items: T[]
  total: number
  page: number
  page_size: number
}

export const STATUS_NAMES: Record<string, string> = { active: '运行中', completed: '已完成', terminated: '已撤销' }
export const FLAG_NAMES: Record<string, string> = { normal: '正常', due_soon: '即将到期', overdue: '已超期' }

export function formatDuration(ms: number | null | undefined): string {
  if (ms == null) return '—'
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s} 秒`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} 分 ${s % 60} 秒`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h} 小时 ${m % 60} 分`
  return `${Math.floor(h / 24)} 天 ${h % 24} 小时`
}
