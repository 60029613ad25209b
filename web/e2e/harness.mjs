// Starts `zhongshu demo` on a free port with a fresh data dir and drives Debian's Chromium.
import { spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

export const PASSWORD = 'Jinan@2026'
export const SHOTS = new URL('../test-results/', import.meta.url).pathname

/** Runs the demo city; resolves once it listens, with its URL and the admins' TOTP secrets. */
export async function startDemo() {
  const bin = process.env.ZHONGSHU_BIN
  if (!bin) throw new Error('set ZHONGSHU_BIN to the zhongshu binary (scripts/test-all does)')
  const dir = mkdtempSync(join(tmpdir(), 'zs-e2e-'))
  const proc = spawn(bin, ['demo', '--data-dir', join(dir, 'demo'), '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ZHONGSHU_LOG: 'warn' },
  })
  let out = ''
  let err = ''
  proc.stderr.on('data', (d) => (err += d))
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start in 60 s:\n${out}\n${err}`)), 60_000)
    proc.stdout.on('data', (d) => {
      out += d
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)
      if (m) {
        clearTimeout(timer)
        resolve(m[1])
      }
    })
    proc.on('exit', (code) => reject(new Error(`demo exited with ${code}:\n${out}\n${err}`)))
  })
  const totp = {}
  for (const m of out.matchAll(/^\s+(\w+)\s+.*?\s([A-Z2-7]{32})\s*$/gm)) totp[m[1]] = m[2]
  return {
    url,
    totp,
    async stop() {
      proc.kill('SIGTERM')
      await new Promise((r) => proc.once('exit', r))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export async function launch() {
  mkdirSync(SHOTS, { recursive: true })
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  })
}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s), as authenticator apps compute it. */
export function totpCode(secretB32, atMs = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = ''
  for (const c of secretB32.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0')
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)))
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(Math.floor(atMs / 1000 / 30)))
  const h = createHmac('sha1', key).update(counter).digest()
  const o = h[h.length - 1] & 0xf
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]
  return String(n % 1_000_000).padStart(6, '0')
}

/** Logs in through the login page (second factor when asked). */
export async function login(page, base, username, password, totpSecret) {
  await page.goto(`${base}/login`)
  await page.fill('input[name=username]', username)
  await page.fill('input[name=password]', password)
  await page.click('[data-test=login]')
  if (totpSecret) {
    await page.waitForSelector('input[name=code]')
    await page.fill('input[name=code]', totpCode(totpSecret))
    await page.click('[data-test=verify]')
  }
}

export async function logout(page) {
  await page.getByRole('button', { name: '账号' }).click()
  await page.getByText('退出登录').click()
  await page.waitForURL(/\/login/)
}
