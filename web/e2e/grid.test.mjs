// Browser tests of the grid platform in headless Chromium: a grid worker reports an event on a
// phone-sized screen with a photo and GPS; it is routed to the category's owner department; the dispatcher
// files and dispatches it (the photo shows in the case); the department handles it; the grid worker verifies on her phone; the
// case closes, and every stage carries its time.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { PASSWORD, SHOTS, launch, login, startDemo } from './harness.mjs'

let demo, browser

// A 1×1 PNG.
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108020000009077 53de0000000c4944415408d763f8cfc00000030101001 8dd8db00000000049454e44ae426082'.replace(/ /g, ''), 'hex')

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

/** A point inside the grid worker's own grid (the middle of its boundary's box). */
async function myGridPoint(page) {
  return page.evaluate(async () => {
    const fc = await (await fetch('/api/v1/grid/areas?level=grid')).json()
    const ring = fc.features[0].geometry.coordinates[0]
    const xs = ring.map((p) => p[0])
    const ys = ring.map((p) => p[1])
    return { longitude: (Math.min(...xs) + Math.max(...xs)) / 2, latitude: (Math.min(...ys) + Math.max(...ys)) / 2 }
  })
}

test('a patrol report goes from the phone through dispatch and handling to verification and close', async () => {
  const title = '文化东路污水井盖破损，行人易绊倒'
  // 1. The grid worker reports on her phone, with GPS.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, permissions: ['geolocation'] })
  const gw = await phone.newPage()
  await signIn(gw, 'gridworker')
  await gw.goto(`${demo.url}/m`)
  await phone.setGeolocation(await myGridPoint(gw))
  await gw.fill('[data-test=m-description]', title)
  await gw.waitForSelector('[data-test=m-suggestions] .el-tag')
  const suggested = await gw.textContent('[data-test=m-suggestions]')
  assert.match(suggested, /井盖/, 'a manhole category is suggested from the words')
  await gw.click('[data-test=m-locate]')
  await gw.waitForFunction(() => !document.querySelector('[data-test=m-locate]')?.classList.contains('is-loading') && /\d+\.\d{6}, \d+\.\d{6}/.test(document.querySelector('[data-test=m-report]')?.textContent ?? ''))
  await gw.fill('[data-test=m-address]', '文化东路与山大路路口')
  // A photo from the camera (a small PNG stands in for it).
  await gw.setInputFiles('[data-test=m-report] [data-test=photo-input]', { name: 'jinggai.png', mimeType: 'image/png', buffer: PNG })
  await gw.waitForSelector('[data-test=m-report] [data-test=photo-picker] .thumb img')
  await gw.screenshot({ path: `${SHOTS}grid-phone-report.png`, fullPage: true })
  await gw.click('[data-test=m-submit]')
  await gw.waitForSelector('[data-test=m-sent]')
  const sent = await gw.textContent('[data-test=m-sent]')
  const caseNo = sent.match(/已上报：(\d{13})/)?.[1]
  assert.ok(caseNo, sent)
  assert.match(sent, /济南市城市管理局/, 'routed to the owner department of manhole covers')

  // 2. The dispatcher files and dispatches it in one step.
  const desk = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  const disp = await desk.newPage()
  await signIn(disp, 'dispatcher')
  await disp.goto(`${demo.url}/grid/cases`)
  await disp.getByText(caseNo).first().click()
  await disp.waitForSelector('[data-test=case-drawer] [data-test=action-accept]')
  await disp.waitForSelector('[data-test=case-drawer] [data-test=case-photos] img')
  await disp.screenshot({ path: `${SHOTS}grid-dispatch-desk.png` })
  await disp.click('[data-test=case-drawer] [data-test=action-submit]')
  await disp.waitForFunction(() => document.querySelector('[data-test=case-drawer]')?.textContent?.includes('处置中'))

  // 3. The department handles it.
  const deptCtx = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  const dept = await deptCtx.newPage()
  await signIn(dept, 'cgj_handler')
  await dept.goto(`${demo.url}/grid/cases?mine=1`)
  await dept.getByText(caseNo).first().click()
  await dept.waitForSelector('[data-test=handle-feedback]')
  await dept.fill('[data-test=handle-feedback]', '已更换新井盖并加固井座')
  await dept.click('[data-test=case-drawer] [data-test=action-submit]')
  await dept.waitForFunction(() => document.querySelector('[data-test=case-drawer]')?.textContent?.includes('待核查'))

  // 4. The grid worker verifies on her phone.
  await gw.click('[data-test=m-tab-tasks]')
  await gw.getByText(caseNo).first().click()
  await gw.waitForSelector('[data-test=m-case] [data-test=verify-result]')
  await gw.fill('[data-test=m-case] [data-test=verify-note]', '现场复核，井盖已更换')
  await gw.screenshot({ path: `${SHOTS}grid-phone-verify.png`, fullPage: true })
  await gw.click('[data-test=m-case] [data-test=action-submit]')
  await gw.waitForSelector('[data-test=m-case]', { state: 'detached' })

  // 5. Closed, with the time of every stage.
  await disp.goto(`${demo.url}/grid/cases`)
  await disp.locator('.el-radio-button', { hasText: '已结案' }).click()
  await disp.getByText(caseNo).first().click()
  await disp.waitForSelector('[data-test=case-timeline]')
  const steps = await disp.$$eval('[data-test=case-timeline] .el-timeline-item', (els) =>
    els.map((e) => ({ text: e.querySelector('.el-timeline-item__content')?.textContent ?? '', at: e.querySelector('.el-timeline-item__timestamp')?.textContent ?? '' })),
  )
  const names = steps.map((s) => s.text.split(' · ')[0].trim())
  assert.deepEqual(names, ['上报', '立案', '派遣', '处置反馈', '核查通过', '结案'])
  for (const s of steps) assert.match(s.at, /\d{4}-\d{2}-\d{2} \d{2}:\d{2}/, `each stage has its time: ${JSON.stringify(s)}`)
  await disp.screenshot({ path: `${SHOTS}grid-closed-timeline.png` })
  await phone.close()
  await desk.close()
  await deptCtx.close()
})

test('the grid administrator sees the platforms, their delivery log and reconciles; a case shows its platform', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  const page = await ctx.newPage()
  await signIn(page, 'gridadmin')
  await page.goto(`${demo.url}/grid/admin?tab=platforms`)
  await page.waitForSelector('[data-test=platforms] .el-table__row')
  const list = await page.textContent('[data-test=platforms]')
  for (const name of ['济南市数字化城市管理平台', '济南市社会治理综合信息平台', '济南市12345政务服务便民热线']) {
    assert.ok(list.includes(name), `${name} is listed`)
  }
  // The demo's messages reach the simulators once the relay runs.
  await page.waitForFunction(async () => {
    const r = await (await fetch('/api/v1/grid/deliveries?state=delivered')).json()
    return r.total >= 3
  }, null, { timeout: 20_000 })
  await page.click('.el-radio-button:has-text("已送达")')
  await page.waitForSelector('[data-test=deliveries] .el-table__row')
  assert.match(await page.textContent('[data-test=deliveries]'), /SZCG\d{8}/, 'the platform\'s own ticket number is kept')
  const szcg = page.locator('[data-test=platforms] .el-table__row', { hasText: '数字化城市管理平台' })
  await szcg.locator('[data-test=reconcile]').click()
  await page.waitForSelector('.el-message--success:has-text("对账完成")')
  await page.screenshot({ path: `${SHOTS}grid-platforms.png`, fullPage: true })
  // The dispatcher sees where the shared-bike case went and what the platform said.
  await ctx.close()
  const ctx2 = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  const disp = await ctx2.newPage()
  await signIn(disp, 'dispatcher')
  await disp.goto(`${demo.url}/grid/cases`)
  await disp.fill('[data-test=case-search]', '共享单车堆放')
  await disp.keyboard.press('Enter')
  await disp.click('.el-table__row:has-text("共享单车堆放")')
  await disp.waitForSelector('[data-test=case-platforms]')
  const text = await disp.textContent('[data-test=case-platforms]')
  assert.match(text, /派往\s*济南市数字化城市管理平台/)
  assert.match(text, /已送达/)
  await disp.screenshot({ path: `${SHOTS}grid-case-platform.png`, fullPage: true })
  // The demo's cases carry the photos of the report and of the handling.
  await disp.keyboard.press('Escape')
  await disp.waitForSelector('.el-drawer', { state: 'hidden' })
  await disp.fill('[data-test=case-search]', '山大路与文化东路路口')
  await disp.keyboard.press('Enter')
  await disp.click('.el-table__row:has-text("山大路与文化东路路口污水井盖破损")')
  await disp.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('[data-test=case-photos] img')]
    return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth === 480)
  })
  await disp.waitForFunction(() => !document.querySelector('.el-drawer-fade-enter-active'))
  await disp.screenshot({ path: `${SHOTS}grid-case-photos.png`, fullPage: true })
  await ctx2.close()
})

test('base information: the buildings and houses of a grid, and an address typed any way finds its house', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  const page = await ctx.newPage()
  await signIn(page, 'gridadmin')
  await page.goto(`${demo.url}/grid/people`)
  await page.click('.el-tabs__item:has-text("地所")')
  await page.waitForSelector('[data-test=places] .el-table__row')
  assert.match(await page.textContent('[data-test=places]'), /历下区山大路1号楼/)
  // The houses of a building.
  await page.locator('[data-test=places] .el-table__row', { hasText: '山大路2号楼' }).locator('.el-link').click()
  await page.waitForFunction(() => /2单元301室/.test(document.querySelector('[data-test=places]')?.textContent ?? ''))
  await page.fill('[data-test=geocode-input]', '济南市历下区山大路２号楼 2单元301室门口')
  await page.keyboard.press('Enter')
  await page.waitForSelector('[data-test=geocode-answer] b')
  assert.match(await page.textContent('[data-test=geocode-answer]'), /历下区山大路2号楼2单元301室.*其余：门口/)
  await page.screenshot({ path: `${SHOTS}grid-places.png`, fullPage: true })
  await ctx.close()
})

test('the grid administrator redraws a community as four grids from a GeoJSON file, creating the new grid', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  const page = await ctx.newPage()
  await signIn(page, 'gridadmin')
  await page.goto(`${demo.url}/grid/admin`)
  await page.waitForSelector('.leaflet-container')
  const before = Number((await page.textContent('.toolbar .muted')).match(/\d+/)[0])
  // The file a GIS team would hand over: 历山社区 cut into four strips, the fourth one new.
  const file = await page.evaluate(async () => {
    const fc = await (await fetch('/api/v1/grid/areas?level=community')).json()
    const c = fc.features.find((f) => f.properties.code === '370102002002')
    const ring = c.geometry.coordinates[0]
    const xs = ring.map((p) => p[0])
    const ys = ring.map((p) => p[1])
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)]
    const h = (y1 - y0) / 4
    const features = [1, 2, 3, 4].map((g) => ({
      type: 'Feature',
      properties: g < 4 ? { code: `3701020020020${g}` } : { code: '37010200200204', name: '历山第4网格', level: 'grid', parent_code: '370102002002' },
      geometry: { type: 'Polygon', coordinates: [[[x0, y0 + (g - 1) * h], [x1, y0 + (g - 1) * h], [x1, y0 + g * h], [x0, y0 + g * h], [x0, y0 + (g - 1) * h]]] },
    }))
    return JSON.stringify({ type: 'FeatureCollection', features })
  })
  await page.click('[data-test=create-orgs]')
  await page.setInputFiles('.toolbar input[type=file]', { name: 'lishan-grids.geojson', mimeType: 'application/geo+json', buffer: Buffer.from(file) })
  await page.waitForSelector('[data-test=import-report]')
  const report = await page.textContent('[data-test=import-report]')
  assert.match(report, /已导入 4 个边界/, report)
  assert.match(report, /新建 1 个组织：历山第4网格（37010200200204）/, report)
  await page.waitForFunction((n) => Number(document.querySelector('.toolbar .muted')?.textContent?.match(/\d+/)?.[0]) === n + 1, before)
  await page.mouse.move(700, 600)
  await page.screenshot({ path: `${SHOTS}grid-new-grid-import.png`, fullPage: true })
  await ctx.close()
})
