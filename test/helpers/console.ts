/**
 * The operator console in a real browser: a DLQ processor (real Kafka, the test database: PostgreSQL when
 * DATABASE_URL is set, else PGlite) serving `/console`, dead letters indexed as the indexer stores them
 * (their origin a real topic), one token per user, and Debian's `chromium` driven by playwright-core.
 * One browser and one processor per test file; each user signs in in a browser context of their own.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { TestContext } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import type { ApprovalPolicy } from '../../src/dlq/approvals.js'
import { createToken, type Role } from '../../src/dlq/auth.js'
import { createDlqProcessor } from '../../src/dlq/processor.js'
import { consoleMount } from '../../src/console/app.js'
import { indexRecords, type IndexItem } from '../../src/dlq/records.js'
import type { SqlExecutor } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { databaseKinds, freshDatabase, randomName } from './db.js'
import { deadLetterContext, USERS } from './dlq-api.js'
import { admin, brokers, defer, topic } from './kafka.js'

/** The API tests' users the console tests sign in as. */
export const CONSOLE_USERS = { viewer: USERS.viewer, operator: USERS.operator, approver: USERS.approver }
export type ConsoleUser = keyof typeof CONSOLE_USERS

export interface ConsoleFixture {
  db: SqlExecutor
  url: string
  origin: string
  tokens: Record<ConsoleUser, string>
  browser: Browser
  /** CSP violation reports the console received. */
  cspReports: unknown[]
  /** Moves the sessions' clock (ms ahead of now). */
  skewSessions(ms: number): void
  /** Indexes dead letters of the origin topic; returns their ids. */
  index(items: Array<(origin: string) => IndexItem>): Promise<string[]>
  /** A new browser context signed in as `user` (closed when the test ends). */
  signIn(t: TestContext, user: ConsoleUser): Promise<{ context: BrowserContext; page: Page }>
  /** The sum of the end offsets of `topic`'s partitions. */
  endOffset(name: string): Promise<number>
}

/** A dead letter of `origin` as the indexer stores it, with anything of it overridden. */
export function deadLetter(offset: number, key: string, value: string, over: { headers?: Array<{ key: string; value: Buffer }>; context?: Record<string, unknown> } = {}): (origin: string) => IndexItem {
  return (origin) => ({
    record: { topic: `${origin}.dlq`, partition: 0, offset, key: Buffer.from(key), value: Buffer.from(value), headers: over.headers ?? [{ key: 'trace', value: Buffer.from('t-1') }], timestamp: Date.now() - offset * 60_000 },
    context: deadLetterContext({ originTopic: origin, originOffset: 100 + offset, lastFailureAt: Date.now() - offset * 60_000, ...(over.context ?? {}) }),
    masked: false,
  })
}

/** The chromium on PATH (Debian's, installed by scripts/setup.sh). */
export function chromiumPath(): string {
  return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim()
}

export async function consoleFixture(t: TestContext, options: { approvals?: ApprovalPolicy } = {}): Promise<ConsoleFixture> {
  const kinds = databaseKinds()
  const db = await freshDatabase(t, kinds[kinds.length - 1]!)
  await migrateLifeline(db)
  const origin = await topic(t, { prefix: 'orders' })
  const dlq = await topic(t, { topic: `${origin}.dlq` })
  const tokens = {} as Record<ConsoleUser, string>
  for (const [user, { role, owner }] of Object.entries(CONSOLE_USERS) as Array<[ConsoleUser, { role: Role; owner: string }]>) tokens[user] = (await createToken(db, { name: user, role, owner })).token
  const cspReports: unknown[] = []
  let skew = 0
  const processor = createDlqProcessor({
    brokers: brokers(),
    db,
    topics: [dlq],
    groupId: randomName('console-indexer'),
    api: { port: 0 },
    jobPollMs: 100,
    indexer: { pollTimeoutMs: 100 },
    ...(options.approvals === undefined ? {} : { approvals: options.approvals }),
    mounts: [consoleMount({ sessions: { now: () => Date.now() + skew }, onCspReport: (r) => cspReports.push(r), progressMs: 200 })],
  })
  defer(t, () => processor.close())
  await processor.start()
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  defer(t, () => browser.close())
  const url = processor.url!
  const a = admin(t)
  const fixture: ConsoleFixture = {
    db,
    url,
    origin,
    tokens,
    browser,
    cspReports,
    skewSessions: (ms) => {
      skew = ms
    },
    index: async (items) => (await indexRecords(db, items.map((i) => i(origin)))).map((r) => r.id),
    signIn: async (tt, user) => {
      const context = await browser.newContext({ baseURL: url })
      defer(tt, () => context.close())
      const page = await context.newPage()
      await page.goto('/console')
      assert.match(page.url(), /\/console\/sign-in/)
      await page.getByLabel('API token').fill(tokens[user])
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.waitForURL(/\/console$/)
      return { context, page }
    },
    endOffset: async (name) => (await a.topicOffsets(name)).reduce((sum, p) => sum + p.high, 0),
  }
  return fixture
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** axe-core's serious and critical violations on the page as it is (axe injected through the debugger, not the page: the CSP stays on). */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE)
  const result = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(o: unknown): Promise<{ violations: Array<{ id: string; impact: string; nodes: Array<{ target: unknown }> }> }> } }).axe
    return axe.run({ resultTypes: ['violations'] })
  })
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}) at ${JSON.stringify(v.nodes.map((n) => n.target)).slice(0, 300)}`)
}

/** The `_csrf` value of the page's first form (the sign-out form: every signed-in page has one). */
export async function csrfOf(page: Page): Promise<string> {
  return page.locator('input[name="_csrf"]').first().inputValue()
}
