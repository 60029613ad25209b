// Telling the user that something failed: the Chinese message of an API error (see
// `describeError`), or the error's text.
import { ElMessage } from 'element-plus'
import { ApiError } from './client'

export function showError(e: unknown) {
  ElMessage.error(e instanceof ApiError ? e.message : String(e))
}
