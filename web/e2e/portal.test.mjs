// Browser tests of the portal in headless Chromium: login, forced password change, creating a
// user in a sub-organisation, the new user seeing only their scope, the auditor finding it.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { PASSWORD, SHOTS, launch, login, logout, startDemo } from './harness.mjs'

let demo, browser

before(async () => {
  demo = await startDemo()
  browser = await launch()
})

after(async () => {
  await browser?.close()
  await demo?.stop()
})

test('the login page shows errors in Chinese for a wrong password', async () => {
  const page = await browser.newPage()
  await login(page, demo.url, 'leader', 'Wrong@2026')
  await page.waitForSelector('.el-message--error')
  assert.match(await page.textContent('.el-message--error'), /用户名或口令错误/)
  await page.screenshot({ path: `${SHOTS}login-error.png` })
  await page.close()
})

test('a district admin creates a user in a street, who must change the password and sees only the street', async () => {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await login(page, demo.url, 'lixia_admin', PASSWORD)
  await page.waitForSelector('[data-test=module-users]')
  await page.screenshot({ path: `${SHOTS}portal-lixia-admin.png` })

  // Create 韩梅 in 解放路街道 (picked in the org tree, which prefills the form).
  await page.click('[data-test=module-users]')
  await page.waitForSelector('[data-test=users-table] .el-table__row')
  await page.click('[data-test="org-370102001"]')
  await page.waitForSelector('.el-tag:has-text("解放路街道")')
  await page.click('[data-test=new-user]')
  await page.fill('input[name=new-username]', 'jiefang_clerk')
  await page.fill('input[name=new-display-name]', '韩梅')
  await page.click('[data-test=create-user]')
  await page.waitForSelector('[data-test=initial-password]')
  const initial = (await page.textContent('[data-test=initial-password]')).trim()
  assert.match(initial, /^Zs/)
  await page.screenshot({ path: `${SHOTS}user-created.png` })
  await page.getByRole('button', { name: '我已记下' }).click()

  // Grant 工作人员 (staff) with scope 仅本级 (own_org) — the dialog's defaults.
  const row = page.locator('[data-test=users-table] .el-table__row', { hasText: 'jiefang_clerk' })
  await row.getByRole('button', { name: '授权' }).click()
  await page.click('[data-test=add-grant]')
  await page.waitForSelector('.el-dialog .el-table__row:has-text("工作人员")')
  await page.keyboard.press('Escape')

  // She is a temporary clerk: her account ends on 30 June next year.
  const ends = `${new Date().getFullYear() + 1}-06-30`
  await row.getByRole('button', { name: '有效期' }).click()
  const day = page.locator('.el-dialog input[placeholder="选择截止日期"]')
  await day.fill(ends)
  await day.press('Enter')
  await page.click('[data-test=save-expiry]')
  await page.waitForSelector(`[data-test=users-table] .el-table__row:has-text("jiefang_clerk"):has-text("${ends}")`)
  await page.screenshot({ path: `${SHOTS}user-expiry.png` })
  await logout(page)

  // The new user logs in with the one-time password and must change it.
  await login(page, demo.url, 'jiefang_clerk', initial)
  await page.waitForSelector('input[name=new_password]')
  await page.screenshot({ path: `${SHOTS}forced-password-change.png` })
  await page.fill('input[name=new_password]', 'Hanmei#2026')
  await page.fill('input[name=confirm_password]', 'Hanmei#2026')
  await page.click('[data-test=change-password]')
  await page.waitForSelector('[data-test=who]')
  assert.match(await page.textContent('[data-test=who]'), /韩梅 · 解放路街道/)

  // Only users of 解放路街道 are visible.
  await page.click('[data-test=module-users]')
  await page.waitForSelector('[data-test=users-table] .el-table__row')
  const names = await page.locator('[data-test=users-table] .el-table__row td:first-child').allTextContents()
  assert.deepEqual(names.map((n) => n.trim()).sort(), ['jiefang_admin', 'jiefang_clerk'])
  await page.screenshot({ path: `${SHOTS}new-user-scope.png` })
  await logout(page)
  await page.close()
})

test('the auditor finds the user creation in the audit log and the chain verifies', async () => {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await login(page, demo.url, 'auditor', PASSWORD, demo.totp.auditor)
  await page.waitForSelector('[data-test=module-audit]')
  await page.click('[data-test=module-audit]')
  await page.fill('input[data-test=filter-action], [data-test=filter-action] input', 'user.create')
  await page.fill('input[data-test=filter-actor], [data-test=filter-actor] input', 'lixia_admin')
  await page.click('[data-test=search]')
  const row = page.locator('[data-test=audit-table] .el-table__row', { hasText: 'user.create' })
  await row.first().waitFor()
  assert.equal(await row.count(), 1)
  assert.match(await row.first().textContent(), /lixia_admin/)
  await page.click('[data-test=verify-chain]')
  await page.waitForSelector('[data-test=verify-result]')
  assert.match(await page.textContent('[data-test=verify-result]'), /完整/)
  await page.screenshot({ path: `${SHOTS}audit-search-verify.png` })

  // 归档与保留: the demo archived the city's setup; the file verifies; a new archive is made,
  // and a purge keeps everything that is younger than the retention period.
  await page.click('.el-tabs__item:has-text("归档与保留")')
  await page.waitForSelector('[data-test=archive-table] .el-table__row')
  assert.match(await page.textContent('[data-test=retention-policy]'), /至少保留 180 天/)
  await page.click('[data-test=verify-archive-1]')
  await page.waitForSelector('.el-message--success')
  assert.match(await page.textContent('.el-message--success'), /归档文件完整/)
  const tomorrow = new Date(Date.now() + 8 * 3600_000 + 86400_000).toISOString().slice(0, 10)
  await page.fill('.archive-before input', tomorrow)
  await page.keyboard.press('Enter')
  const rowsBefore = await page.locator('[data-test=archive-table] .el-table__row').count()
  await page.click('[data-test=archive]')
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-test=archive-table] .el-table__row').length > n,
    rowsBefore,
  )
  await page.click('[data-test=purge]')
  await page.click('.el-message-box__btns .el-button--primary')
  await page.waitForSelector('[data-test=purge-summary]')
  assert.match(await page.textContent('[data-test=purge-summary]'), /已从数据库清理 0 条记录/)
  await page.waitForSelector('.el-message-box', { state: 'hidden' })
  await page.waitForTimeout(400) // the dialog's opening animation
  await page.screenshot({ path: `${SHOTS}audit-archives.png` })
  await page.close()
})

test('a grid worker turns on two-factor authentication from the profile and logs in with a recovery code', async () => {
  const { totpCode } = await import('./harness.mjs')
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  await login(page, demo.url, 'gridworker', PASSWORD)
  await page.waitForSelector('[data-test=who]')
  await page.goto(`${demo.url}/profile`)
  await page.click('[data-test=start-totp]')
  await page.waitForSelector('[data-test=totp-secret]')
  const secret = (await page.textContent('[data-test=totp-secret]')).trim()
  await page.fill('input[name=totp-code]', totpCode(secret))
  await page.click('[data-test=enable-totp]')
  await page.waitForSelector('.codes li')
  const codes = await page.locator('.codes li').allTextContents()
  assert.equal(codes.length, 10)
  await page.screenshot({ path: `${SHOTS}profile-totp-enabled.png` })
  await page.getByRole('button', { name: '我已保存' }).click()
  await page.waitForSelector('.el-tag:has-text("已启用")')
  await logout(page)
  // Next login asks for the second factor; a recovery code works once.
  await page.fill('input[name=username]', 'gridworker')
  await page.fill('input[name=password]', PASSWORD)
  await page.click('[data-test=login]')
  await page.waitForSelector('input[name=code]')
  await page.fill('input[name=code]', codes[0].trim())
  await page.click('[data-test=verify]')
  await page.waitForSelector('[data-test=who]')
  assert.match(await page.textContent('[data-test=who]'), /吴海燕/)
  await page.close()
})

test('the security administrator sees abnormal calls as alerts and handles one', async () => {
  // Someone without a session knocks on the API forty times in a minute.
  for (let i = 0; i < 40; i++) {
    const r = await fetch(`${demo.url}/api/v1/users?page=${i + 1}`)
    assert.equal(r.status, 401)
  }
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await login(page, demo.url, 'secadmin', PASSWORD, demo.totp.secadmin)
  await page.waitForSelector('[data-test=module-alerts]')
  await page.click('[data-test=module-alerts]')
  // Found by its rule: outside the administrators' working hours (China time) an after-hours alert
  // from the same address is listed too.
  const burst = page.locator('[data-test=alerts-table] .el-table__row', { hasText: '频繁被拒绝访问' })
  await burst.first().waitFor()
  assert.match(await burst.first().textContent(), /127\.0\.0\.1/)
  // The demo city's own alerts are there too.
  await page.locator('[data-test=alerts-table] .el-table__row', { hasText: 'szcg-legacy' }).first().waitFor()
  await page.screenshot({ path: `${SHOTS}security-alerts.png` })
  await burst.first().locator('[data-test=handle-alert]').click()
  await page.fill('textarea[data-test=alert-note], [data-test=alert-note] textarea', '核实为外网扫描，已在边界防火墙封禁该地址')
  await page.click('[data-test=alert-handle-confirm]')
  await page.waitForSelector('.el-message--success')
  await page.locator('[data-test=alert-status] label', { hasText: '已处理' }).click()
  const handled = page.locator('[data-test=alerts-table] .el-table__row', { hasText: '已在边界防火墙封禁' })
  await handled.first().waitFor()
  assert.match(await handled.first().textContent(), /secadmin/)
  await page.screenshot({ path: `${SHOTS}security-alert-handled.png` })
  await page.close()
})
