// Browser tests of the workflow screens in headless Chromium: a process designed in the
// bpmn-js designer (a two-step approval with a parallel branch), deployed, started, its tasks
// completed by two different users through the inbox, and the taken path highlighted.
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

async function signIn(page, username) {
  await login(page, demo.url, username, PASSWORD)
  await page.waitForURL((u) => !u.pathname.startsWith('/login'))
}

const shape = (page, id) => page.locator(`.djs-element.djs-shape[data-element-id="${id}"]`)

/** Selects a shape afresh (the context pad opens on a change of selection only). */
async function select(page, id) {
  await page.mouse.click(700, 820)
  await shape(page, id).click()
}

/** Selects a shape and appends a new element from its context pad; returns the new element's id. */
async function append(page, fromId, action, label) {
  const before = await page.$$eval('.djs-element.djs-shape', (els) => els.map((e) => e.getAttribute('data-element-id')))
  await select(page, fromId)
  await page.click(`.djs-context-pad [data-action="${action}"]`)
  if (label) {
    await page.keyboard.type(label)
  }
  await page.mouse.click(700, 820) // commit the label on empty canvas
  const after = await page.$$eval('.djs-element.djs-shape', (els) => els.map((e) => e.getAttribute('data-element-id')))
  const added = after.filter((id) => !before.includes(id) && !id.endsWith('_label'))
  assert.equal(added.length, 1, `one new element after ${action}: ${added}`)
  return added[0]
}

const shapeIds = (page) => page.$$eval('.djs-element.djs-shape', (els) => els.map((e) => e.getAttribute('data-element-id')))

/** Replaces an element's type from its context pad; returns the id of the replacement. */
async function replace(page, id, entry) {
  const before = await shapeIds(page)
  await select(page, id)
  await page.click('.djs-context-pad [data-action="replace"]')
  await page.click(`[data-id="${entry}"]`)
  const after = await shapeIds(page)
  const added = after.filter((x) => !before.includes(x) && !x.endsWith('_label'))
  return added[0] ?? id
}

async function setAssignee(page, id, assignee) {
  await select(page, id)
  const group = page.locator('[data-group-id="group-assignmentDefinition"] .bio-properties-panel-group-header')
  if (!(await page.locator('#bio-properties-panel-assignmentDefinitionAssignee').isVisible())) await group.click()
  await page.fill('#bio-properties-panel-assignmentDefinitionAssignee', assignee)
  await page.keyboard.press('Tab')
}

test('a flow admin designs and deploys a two-step approval with a parallel branch; two users complete it; the path is highlighted', async () => {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await signIn(page, 'flowadmin')
  await page.goto(`${demo.url}/flow/designer`)
  await page.waitForSelector('.djs-element[data-element-id="StartEvent_1"]')
  await page.fill('input[data-test=process-name], [data-test=process-name] input', '公务用车申请')
  await page.fill('input[data-test=process-key], [data-test=process-key] input', 'car_request')

  const fork = await replace(page, await append(page, 'StartEvent_1', 'append.gateway'), 'replace-with-parallel-gateway')
  const dept = await append(page, fork, 'append.append-task', '部门审批')
  const join = await replace(page, await append(page, dept, 'append.gateway'), 'replace-with-parallel-gateway')
  const end = await append(page, join, 'append.end-event', '办结')
  // The second branch: from the fork, a task placed by the context pad below, connected to the join.
  const fleet = await append(page, fork, 'append.append-task', '车队调度')
  await select(page, fleet)
  await page.click('.djs-context-pad [data-action="connect"]')
  await shape(page, join).click()
  // Both tasks become user tasks with assignees.
  const deptTask = await replace(page, dept, 'replace-with-user-task')
  await setAssignee(page, deptTask, 'cgj_handler')
  const fleetTask = await replace(page, fleet, 'replace-with-user-task')
  await setAssignee(page, fleetTask, 'dispatcher')
  assert.ok(end)
  await page.click('[data-test=check]')
  await page.waitForSelector('.el-message--success')
  await page.screenshot({ path: `${SHOTS}flow-designer.png` })
  // The properties panel speaks Chinese: every group of the user task, and the hints of a timer.
  const groups = await page.$$eval('.bio-properties-panel-group-header-title', (els) => els.map((e) => e.textContent.trim()))
  assert.ok(groups.length >= 8, groups.join('|'))
  for (const g of groups) assert.doesNotMatch(g, /[A-Za-z]{3,}/, `group "${g}" is translated`)
  await page.click('[data-test=deploy]')
  await page.waitForSelector('text=已发布：公务用车申请 第 1 版')

  // Start it from the model list.
  await page.goto(`${demo.url}/flow/models`)
  await page.locator('tr', { hasText: '公务用车申请' }).locator('[data-test=start]').click()
  await page.fill('textarea[data-test=start-vars], [data-test=start-vars] textarea', '{"destination": "历下区政务服务中心"}')
  await page.click('[data-test=start-confirm]')
  await page.waitForURL(/\/flow\/instances\/.+/)
  const instanceUrl = page.url()
  await logout(page)

  // Two different users complete their tasks from their inboxes.
  for (const [user, task] of [['cgj_handler', '部门审批'], ['dispatcher', '车队调度']]) {
    await signIn(page, user)
    await page.goto(`${demo.url}/flow/tasks`)
    await page.locator('[data-test=tasks] tr', { hasText: task }).click()
    await page.waitForSelector('[data-test=complete]')
    await page.fill('textarea[data-test=task-comment], [data-test=task-comment] textarea', `${task}：同意`)
    await page.screenshot({ path: `${SHOTS}flow-task-${user}.png` })
    await page.click('[data-test=complete]')
    await page.waitForSelector('text=已提交')
    await logout(page)
  }

  // The flow admin sees the instance completed with the whole path highlighted.
  await signIn(page, 'flowadmin')
  await page.goto(instanceUrl)
  await page.waitForSelector('[data-test=status]')
  assert.equal((await page.textContent('[data-test=status]')).trim(), '已完成')
  await page.waitForSelector('.djs-element.zs-done')
  for (const id of ['StartEvent_1', fork, deptTask, fleetTask, join, end]) {
    assert.ok(await page.locator(`.djs-element.zs-done[data-element-id="${id}"]`).count(), `${id} highlighted as done`)
  }
  assert.ok((await page.locator('.djs-connection.zs-taken').count()) >= 6, 'every sequence flow drawn as taken')
  const timeline = await page.textContent('[data-test=timeline]')
  assert.match(timeline, /cgj_handler/)
  assert.match(timeline, /dispatcher/)
  await page.screenshot({ path: `${SHOTS}flow-instance-path.png`, fullPage: true })
  await page.close()
})

test('the demo shows an overdue task in red and an incident an operator can retry', async () => {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await signIn(page, 'cgj_handler')
  // The portal home counts the work waiting.
  await page.waitForSelector('[data-test=work-summary] .late')
  await page.waitForFunction(() => Number(document.querySelector('[data-test=work-summary] .late')?.textContent) >= 1)
  await page.screenshot({ path: `${SHOTS}portal-work-summary.png` })
  await page.goto(`${demo.url}/flow/tasks`)
  await page.waitForSelector('[data-test=tasks] .el-tag--danger')
  assert.match(await page.textContent('[data-test=tasks]'), /已超期/)
  await page.waitForTimeout(500) // let the tags finish their entry transition
  await page.screenshot({ path: `${SHOTS}flow-inbox-overdue.png` })
  // The bell counts the unread notices (pushed over SSE) and opens the inbox.
  await page.waitForSelector('[data-test=unread] .el-badge__content:not([style*="display: none"])')
  assert.ok(Number(await page.textContent('[data-test=unread] .el-badge__content')) > 0)
  await page.click('[data-test=unread] button')
  await page.locator('[data-test=inbox] tr', { hasText: '新待办' }).first().waitFor()
  await page.screenshot({ path: `${SHOTS}notify-inbox.png` })
  await logout(page)
  await signIn(page, 'flowadmin')
  await page.goto(`${demo.url}/flow/incidents`)
  await page.locator('[data-test=incidents] tr', { hasText: '127.0.0.1:9' }).first().waitFor()
  assert.match(await page.textContent('[data-test=incidents]'), /127\.0\.0\.1:9/)
  await page.screenshot({ path: `${SHOTS}flow-incidents.png` })
  await page.close()
})

test('a flow admin sees the buffered message, sends one to a waiting instance and is told when nobody waits', async () => {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  await signIn(page, 'flowadmin')
  await page.goto(`${demo.url}/flow/instances`)
  await page.click('[data-test=open-messages]')
  // The demo's 一网通办 message waits in the buffer for application SQ-2026-0315.
  await page.click('.el-drawer .el-tabs__item:has-text("缓存中的消息")')
  await page.waitForSelector('[data-test=buffered-messages] .el-table__row')
  const list = await page.textContent('[data-test=buffered-messages]')
  assert.match(list, /材料已补正/)
  assert.match(list, /SQ-2026-0315/)
  assert.match(list, /YWTB-20261122-000815/)
  await page.screenshot({ path: `${SHOTS}flow-buffered-messages.png` })
  // SQ-2026-0311 waits for its supplement: the message reaches it.
  await page.click('.el-drawer .el-tabs__item:has-text("发送消息")')
  const form = page.locator('[data-test=message-form]')
  await form.locator('input').nth(0).fill('材料已补正')
  await form.locator('input').nth(1).fill('SQ-2026-0311')
  await page.click('[data-test=message-send]')
  await page.waitForSelector('[data-test=message-result]')
  assert.match(await page.textContent('[data-test=message-result]'), /已送达实例：政务服务材料补正（SQ-2026-0311）/)
  // Nobody waits for SQ-2026-0999 and it is not to be kept: the dialog says what to do.
  await form.locator('input').nth(1).fill('SQ-2026-0999')
  await page.click('[data-test=message-ttl]')
  await page.click('.el-select-dropdown__item:has-text("不缓存")')
  await page.click('[data-test=message-send]')
  await page.waitForFunction(() => /没有正在等待该消息（关联键 SQ-2026-0999）的实例/.test(document.querySelector('[data-test=message-result]')?.textContent ?? ''))
  await page.screenshot({ path: `${SHOTS}flow-send-message.png` })
  await page.close()
})
