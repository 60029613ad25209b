// The API client: same-origin fetch with the session cookie, the CSRF token on
// state-changing requests, and errors turned into Chinese messages by their stable code.

export interface ApiErrorBody {
  code: string
  message: string
  request_id: string
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    public serverMessage: string,
    public requestId: string,
  ) {
    super(describeError(code, serverMessage))
  }
}

const MESSAGES: Record<string, string> = {
  invalid_credentials: '用户名或口令错误',
  account_locked: '登录失败次数过多，账号已临时锁定',
  account_disabled: '账号已停用，请联系管理员',
  account_expired: '账号已过有效期，请联系管理员延期',
  integrity_violation: '账号数据完整性校验失败，已通知安全管理员，请联系管理员',
  session_expired: '会话已过期，请重新登录',
  unauthenticated: '请先登录',
  invalid_totp: '动态口令错误、已过期或已使用',
  weak_password: '新口令不符合口令策略',
  password_reused: '新口令不能与最近使用过的口令相同',
  forbidden: '没有执行此操作的权限',
  out_of_scope: '对象超出您的数据权限范围',
  not_found: '对象不存在或不可见',
  already_exists: '已存在相同标识的对象',
  conflict: '操作与当前状态冲突',
  validation_failed: '输入不符合要求',
  separation_of_duties: '违反三员分立原则',
  grant_exceeds_grantor: '授权不能超出您自己的权限或数据范围',
  rate_limited: '请求过于频繁，请稍后再试',
  csrf_failed: '页面已过期，请刷新后重试',
  payload_too_large: '提交的内容过大',
  internal: '系统内部错误',
  unavailable: '服务暂不可用，请稍后再试',
}

/** A Chinese message for an error code, keeping the server's detail. */
export function describeError(code: string, serverMessage: string): string {
  const zh = MESSAGES[code]
  return zh ? `${zh}（${serverMessage}）` : serverMessage || code
}

// The CSRF token survives reloads in sessionStorage (absent outside a browser, e.g. in unit tests).
const storage: Storage | undefined = typeof sessionStorage === 'undefined' ? undefined : sessionStorage
let csrfToken = storage?.getItem('zs_csrf') || ''

export function setCsrf(token: string) {
  csrfToken = token
  storage?.setItem('zs_csrf', token)
}

/** The CSRF header, for requests sent without `api()` (raw bodies such as GeoJSON files). */
export function csrfHeader(): Record<string, string> {
  return { 'x-csrf-token': csrfToken }
}

type Handler = (e: ApiError) => void
let onUnauthenticated: Handler = () => {}
export function setUnauthenticatedHandler(h: Handler) {
  onUnauthenticated = h
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (resp.status === 204) return undefined as T
  const text = await resp.text()
  let data: unknown = undefined
  try {
    data = text ? JSON.parse(text) : undefined
  } catch {
    data = text
  }
  if (!resp.ok) {
    const e = (data || {}) as Partial<ApiErrorBody>
    const err = new ApiError(resp.status, e.code || 'internal', e.message || resp.statusText, e.request_id || '')
    if (resp.status === 401 && path !== '/auth/login' && path !== '/auth/mfa') onUnauthenticated(err)
    throw err
  }
  return data as T
}

export const get = <T>(path: string) => api<T>('GET', path)
export const post = <T>(path: string, body: unknown = {}) => api<T>('POST', path, body)
export const put = <T>(path: string, body: unknown) => api<T>('PUT', path, body)
export const patch = <T>(path: string, body: unknown) => api<T>('PATCH', path, body)
export const del = <T>(path: string) => api<T>('DELETE', path)

/** Builds a query string from the defined, non-empty values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  }
  const s = q.toString()
  return s ? `?${s}` : ''
}
