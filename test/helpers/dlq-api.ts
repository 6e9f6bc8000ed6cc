/**
 * The DLQ processor's HTTP API in process, for black-box tests: a fresh database of the given kind, dead
 * letters indexed as the indexer stores them (their origin a real topic of the test broker), one token per
 * user (each with its owner: a person or a service), and the real app (`app.request()`, no port) with a
 * real producer. `endOffset(topic)` tells what reached a topic.
 */
import type { TestContext } from 'node:test'
import { createDlqApi, type DlqApiOptions } from '../../src/dlq/api.js'
import type { ApprovalPolicy } from '../../src/dlq/approvals.js'
import { createToken, type Role } from '../../src/dlq/auth.js'
import type { DeadLetterContext } from '../../src/failure/formats.js'
import type { Masker } from '../../src/failure/masking.js'
import { indexRecords, type IndexItem } from '../../src/dlq/records.js'
import type { RedriveDeps } from '../../src/dlq/redrive/types.js'
import type { SqlExecutor, SqlQueryable, SqlRow } from '../../src/store/executor.js'
import { migrateLifeline } from '../../src/store/schema.js'
import { freshDatabase } from './db.js'
import { admin, brokers, producer, topic } from './kafka.js'

/** Users and their tokens' roles and owners; `olgaApprover` is a second token of the operator's owner. */
export const USERS = {
  viewer: { role: 'viewer', owner: 'vera' },
  operator: { role: 'operator', owner: 'olga' },
  operator2: { role: 'operator', owner: 'oscar' },
  approver: { role: 'approver', owner: 'anna' },
  approver2: { role: 'approver', owner: 'arne' },
  olgaApprover: { role: 'approver', owner: 'olga' },
  admin: { role: 'admin', owner: 'adam' },
} as const satisfies Record<string, { role: Role; owner: string }>

export type User = keyof typeof USERS

export interface ApiResponse {
  status: number
  body: Record<string, unknown> & { error?: { code: string; message: string } }
}

export interface ApiFixture {
  db: SqlExecutor
  app: ReturnType<typeof createDlqApi>
  deps: RedriveDeps
  tokens: Record<User, string>
  /** Record ids by name. */
  ids: Record<string, string>
  /** The origin topic of the records (a real topic, 1 partition). */
  origin: string
  call(method: string, path: string, opts?: { as?: User | null; token?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<ApiResponse>
  /** The sum of the end offsets of `topic`'s partitions (0: nothing was ever sent to it). */
  endOffset(topic: string): Promise<number>
}

export const deadLetterContext = (over: Partial<DeadLetterContext>): DeadLetterContext => ({
  format: 'lifeline', originPartition: 0, consumerGroup: 'billing', service: 'billing', errorClass: 'TaxError', errorCode: 'E_TAX', errorMessage: 'tax service down', fingerprint: 'fp-tax', details: {}, ...over,
})

export interface ApiFixtureOptions {
  approvals?: ApprovalPolicy
  /** More createDlqApi options (replayTopics, redriveRate, ...). */
  api?: Partial<Omit<DlqApiOptions, 'db' | 'deps'>>
  masker?: Masker
  schemas?: Record<string, object>
  /** Wraps the database the app and the redrive use (a spy on the real one). */
  wrapDb?: (db: SqlExecutor) => SqlExecutor
  /** Records to index instead of the default six (`a`..`f`, keys k1, k1, k2, k3, k4, k5). */
  records?: (origin: string) => Array<[string, IndexItem]>
}

/** A record of `origin` as the indexer stores it. */
export function item(origin: string, offset: number, key: string, value: string, over: Partial<DeadLetterContext> = {}, masked = false): IndexItem {
  return {
    record: { topic: `${origin}.dlq`, partition: 0, offset, key: Buffer.from(key), value: Buffer.from(value), headers: [{ key: 'trace', value: Buffer.from('t-1') }], timestamp: Date.UTC(2025, 0, 10) },
    context: deadLetterContext({ originTopic: origin, originOffset: 100 + offset, ...over }),
    masked,
  }
}

export async function apiFixture(t: TestContext, kind: SqlExecutor['kind'], options: ApiFixtureOptions = {}): Promise<ApiFixture> {
  const real = await freshDatabase(t, kind)
  await migrateLifeline(real)
  const db = options.wrapDb ? options.wrapDb(real) : real
  const origin = await topic(t, { prefix: 'orders' })
  const items =
    options.records?.(origin) ??
    ['k1', 'k1', 'k2', 'k3', 'k4', 'k5'].map((key, i): [string, IndexItem] => [String.fromCharCode(97 + i), item(origin, i, key, `{"order":"${String.fromCharCode(97 + i)}","amount":10}`)])
  const results = await indexRecords(db, items.map(([, i]) => i))
  const ids = Object.fromEntries(items.map(([name], i) => [name, results[i]!.id]))
  const tokens = {} as Record<User, string>
  for (const [user, { role, owner }] of Object.entries(USERS) as Array<[User, { role: Role; owner: string }]>) tokens[user] = (await createToken(db, { name: user, role, owner })).token
  const deps: RedriveDeps = { db, producer: producer(t), kafka: { brokers: brokers() }, ...(options.masker ? { masker: options.masker } : {}), ...(options.schemas ? { schemas: options.schemas } : {}) }
  await deps.producer.connect()
  const app = createDlqApi({ db, deps, ...(options.approvals ? { approvals: options.approvals } : {}), onJobReady: () => undefined, onJobResume: () => undefined, ...options.api })
  const call: ApiFixture['call'] = async (method, path, opts = {}) => {
    const token = opts.token ?? (opts.as === null || opts.as === undefined ? undefined : tokens[opts.as])
    const headers: Record<string, string> = { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(opts.body === undefined && opts.raw === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers }
    const res = await app.request(path, { method, headers, ...(opts.raw !== undefined ? { body: opts.raw } : opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }) })
    const text = await res.text()
    return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as ApiResponse['body']) }
  }
  const a = admin(t)
  const endOffset = async (name: string) => (await a.topicOffsets(name)).reduce((sum, p) => sum + p.high, 0)
  return { db, app, deps, tokens, ids, origin, call, endOffset }
}

/** What a query returned: its text, its row count and the longest array among its parameters. */
export interface SeenQuery {
  text: string
  rows: number
  longestArray: number
}

/** The real database, every query's result size recorded in `seen` (transactions included). */
export function spyDb(db: SqlExecutor, seen: SeenQuery[]): SqlExecutor {
  const wrap = (q: SqlQueryable): SqlQueryable => ({
    query: async <R extends SqlRow = SqlRow>(text: string, params?: readonly unknown[]) => {
      const result = await q.query<R>(text, params)
      seen.push({ text, rows: result.rows.length, longestArray: Math.max(0, ...(params ?? []).map((p) => (Array.isArray(p) ? p.length : 0))) })
      return result
    },
  })
  const outer = wrap(db)
  return { kind: db.kind, query: outer.query, transaction: (fn) => db.transaction((tx) => fn(wrap(tx))), close: () => db.close() }
}
