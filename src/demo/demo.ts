/**
 * The live demo: a real local Kafka broker, the embedded database (or DATABASE_URL), an order-events
 * producer and a Lifeline consumer that applies each event to a table. Some events fail transiently
 * (retried in place, then moved to a retry tier while the partition flows on), some are poison
 * (dead-lettered with full failure context). Either way the order's later events are parked behind the
 * failed one and released in order: by the retry succeeding, or by an operator releasing the key. The demo
 * prints every step and then reads the dead-letter topic back.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { createInterface } from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startKafka, type KafkaCluster } from '../dev/kafka-launcher.js'
import { clientVersion, createAdmin, createConsumer as createKafkaConsumer, createProducer } from '../kafka/index.js'
import type { ProduceRecord } from '../kafka/types.js'
import { NonRetriableError } from '../retry/classify.js'
import { createConsumer } from '../runtime/consumer.js'
import { decodeFailureHeaders } from '../failure/headers.js'
import { dlqTopicName } from '../runtime/options.js'
import { databaseFromEnv, describeDatabase, loadMigrations, migrate } from '../store/index.js'
import { createParkedKeys } from '../ordering/state-store.js'
import { createDlqProcessor } from '../dlq/processor.js'
import { consoleMount } from '../console/app.js'
import { createToken } from '../dlq/auth.js'
import { countRecords, listRecords } from '../dlq/records.js'
import { retryTopicName } from '../failure/tier-record.js'

export interface DemoOptions {
  orders: number
  follow: boolean
  /** Keep the DLQ processor and its console up after the operator's part until `signal` (printing a token to sign in with). */
  console?: boolean
  signal: AbortSignal
  print(line: string): void
}

const TOPIC = 'demo.orders'
const SERVICE = 'demo'
const GROUP = 'lifeline-demo'
const STATUSES = ['CREATED', 'PAID', 'SHIPPED'] as const

interface OrderEvent {
  orderId: string
  status: string
  amount: number
  /** The demo's fault injection: fail this many attempts with a timeout first. */
  flaky?: number
}

/** Order events: every 5th order's PAID is flaky (2 timeouts), every 7th order's PAID has a negative amount (poison). */
export function demoEvents(from: number, count: number): ProduceRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i
    const order = Math.floor(n / STATUSES.length)
    const status = STATUSES[n % STATUSES.length]!
    const event: OrderEvent = { orderId: `order-${order}`, status, amount: order % 7 === 6 && status === 'PAID' ? -1 : 1000 + (order % 5) * 250 }
    if (order % 5 === 2 && status === 'PAID') event.flaky = 2
    return { topic: TOPIC, key: event.orderId, value: JSON.stringify(event), headers: [{ key: 'event-id', value: Buffer.from(`evt-${n}`) }] }
  })
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const { print } = options
  let cluster: KafkaCluster | undefined
  let bootstrap = process.env.KAFKA_BOOTSTRAP
  if (bootstrap) print(`kafka: using KAFKA_BOOTSTRAP=${bootstrap}`)
  else {
    print('kafka: starting a local Apache Kafka broker (the first run downloads its jars with Maven)...')
    cluster = await startKafka({ brokers: 1, stateDir: join(process.cwd(), '.lifeline', 'kafka') })
    bootstrap = cluster.bootstrap
    print(`kafka: Apache Kafka ${cluster.version} ready at ${bootstrap} in ${cluster.startupMs} ms (${clientVersion()})`)
  }
  const brokers = bootstrap.split(',')
  const db = await databaseFromEnv()
  const admin = createAdmin({ brokers })
  const producer = createProducer({ brokers })
  /** Statuses in the order they were applied, per order: the demo checks no event overtook an earlier one. */
  const history = new Map<string, string[]>()
  const consumer = createConsumer<OrderEvent>({
    brokers,
    groupId: GROUP,
    service: SERVICE,
    topics: [TOPIC],
    // Two attempts in place, then retry tiers of 1 s and 2 s (non-blocking), then the DLQ.
    retry: { maxAttempts: 2, backoff: { type: 'exponential', baseMs: 200, maxMs: 2000, jitter: 'equal' } },
    retryTopics: { delaysMs: [1000, 2000] },
    // Parked keys live in the same database; the owner looks for released keys every 200 ms.
    state: db,
    parking: { pollMs: 200 },
    handler: async ({ value, offset, partition, attempt }) => {
      if (value.amount < 0) throw new NonRetriableError(`order ${value.orderId} has a negative amount`, { code: 'E_NEGATIVE_AMOUNT' })
      if ((value.flaky ?? 0) >= attempt) throw Object.assign(new Error('payment gateway timed out'), { code: 'E_GATEWAY_TIMEOUT' })
      history.set(value.orderId, [...(history.get(value.orderId) ?? []), value.status])
      await db.query(
        `insert into demo_orders (order_id, status, amount, source_topic, source_partition, source_offset)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (order_id) do update set status = excluded.status, source_offset = excluded.source_offset, applied_at = now()`,
        [value.orderId, value.status, value.amount, TOPIC, partition, offset],
      )
    },
    onDeadLetter: (record, error) => {
      print(`recover  ${record.keyText}: final failure (${(error as Error).message}); a compensation step would run here`)
    },
  })
  let processed = 0
  let deadLettered = 0
  let parkedRecords = 0
  consumer.on('retry-tier', (e) => print(`tier     partition ${e.partition} offset ${e.offset} -> ${e.retryTopic}, due in ${Math.max(0, e.dueAt - Date.now())} ms (${e.errorCode}, ${e.attempts} attempts so far); the partition flows on`))
  consumer.on('parked', (e) => print(`park     key ${e.key.toString()} is parked behind offset ${e.offset} (${e.location}): its later events wait`))
  consumer.on('record-parked', (e) => {
    parkedRecords++
    print(`park     partition ${e.partition} offset ${e.offset} (key ${e.key.toString()}) stored behind its parked key`)
  })
  consumer.on('released', (e) => {
    parkedRecords -= e.replayed
    print(`release  key ${e.key.toString()}: ${e.replayed} parked event(s) replayed in order; the key flows again`)
  })
  consumer.on('processed', (e) => {
    processed++
    print(`consume  partition ${e.partition} offset ${e.offset} applied to demo_orders${e.attempts > 1 ? ` after ${e.attempts} attempts` : ''}`)
  })
  consumer.on('retry', (e) => print(`retry    partition ${e.partition} offset ${e.offset}: attempt ${e.attempt} failed (${(e.error as Error).message}), next in ${e.delayMs} ms`))
  consumer.on('dead-letter', (e) => {
    deadLettered++
    print(`DLQ      partition ${e.partition} offset ${e.offset} -> ${e.dlqTopic} offset ${e.dlqOffset} (${e.errorCode}, ${e.attempts} attempt${e.attempts > 1 ? 's' : ''})`)
  })
  try {
    print(`database: ${await describeDatabase(db)}`)
    const applied = await migrate(db, await loadMigrations(join(dirname(fileURLToPath(import.meta.url)), 'migrations')), { table: 'demo_migrations' })
    if (applied.length > 0) print(`database: applied ${applied.map((m) => m.file).join(', ')}`)
    await db.query('delete from demo_orders')

    // A fresh run: recreate the demo topics so earlier runs' records and offsets do not mix in.
    const dlqTopic = dlqTopicName(SERVICE, TOPIC)
    const derived = [dlqTopic, retryTopicName(SERVICE, TOPIC, 1), retryTopicName(SERVICE, TOPIC, 2)]
    const stale = (await admin.listTopics()).filter((t) => t === TOPIC || derived.includes(t))
    if (stale.length > 0) await admin.deleteTopics(stale)
    await waitUntil(async () => !(await admin.listTopics()).some((t) => stale.includes(t)))
    await admin.createTopics([{ topic: TOPIC, partitions: 3 }])
    print(`topic: ${TOPIC} (3 partitions); its retry tiers and DLQ (${derived.join(', ')}) are created by the consumer at start`)
    // Parked keys of earlier runs refer to the deleted topic: start clean.
    await db.query('delete from lifeline_parked_records where group_id = $1', [GROUP]).catch(() => undefined)
    await db.query('delete from lifeline_parked_keys where group_id = $1', [GROUP]).catch(() => undefined)
    await consumer.start()

    let produced = 0
    const produce = async (count: number) => {
      const records = demoEvents(produced, count)
      produced += count
      const acks = await producer.send(records)
      for (const [i, ack] of acks.entries()) {
        const e = JSON.parse(String(records[i]!.value)) as OrderEvent
        const note = e.amount < 0 ? ' (poison: negative amount)' : e.flaky ? ` (flaky: fails ${e.flaky}x)` : ''
        print(`produce  ${e.orderId} ${e.status}${note} -> partition ${ack.partition} offset ${ack.offset}`)
      }
    }
    await produce(options.orders * STATUSES.length)
    // One malformed event: it cannot be decoded, so it goes to the DLQ at once with its original bytes.
    const [bad] = await producer.send([{ topic: TOPIC, key: 'order-garbled', value: '{"orderId": "order-garbled", "status": ' }])
    produced++
    print(`produce  order-garbled (poison: malformed JSON) -> partition ${bad!.partition} offset ${bad!.offset}`)

    let lastProduce = Date.now()
    const deadline = Date.now() + 60_000
    const handled = () => processed + deadLettered + parkedRecords
    while (!options.signal.aborted && (options.follow || (handled() < produced && Date.now() < deadline))) {
      await delay(100)
      if (options.follow && Date.now() - lastProduce > 1000) {
        lastProduce = Date.now()
        await produce(1)
      }
    }

    // The operator's part, through the DLQ processor (indexer + API): look at the parked keys and the dead
    // letters, discard the poison (which releases its key) and repair the garbled event by edit-and-replay.
    const keys = createParkedKeys(db)
    const parked = await keys.list({ group: GROUP })
    print(`operator: ${parked.length} key(s) parked behind a dead letter (\`lifeline keys list --group ${GROUP}\`):`)
    for (const k of parked) print(`  ${k.keyText} head offset ${k.headOffset} in ${k.headLocation} (${k.headErrorCode}), ${k.parkedRecords} event(s) waiting`)
    const processor = createDlqProcessor({ brokers, db, topics: [dlqTopic], api: { port: 0 }, mounts: [consoleMount()] })
    await processor.start()
    try {
      const token = await createToken(db, { name: `demo-operator-${Date.now().toString(36)}`, role: 'operator', owner: 'demo' })
      print(`dlq processor: indexing ${dlqTopic}, API at ${processor.url}, console at ${processor.url}/console (token for role operator: ${token.token.slice(0, 8)}…)`)
      while ((await countRecords(db, {})) < deadLettered && Date.now() < deadline) await delay(100)
      const cli = async (...args: string[]) => {
        print(`$ lifeline dlq ${args.map((a) => (/[\s{}"]/.test(a) ? `'${a}'` : a)).join(' ')}`)
        await runChild(['bin/lifeline.js', 'dlq', ...args, '--url', processor.url!], { LIFELINE_TOKEN: token.token }, (line) => print(`  ${line}`))
      }
      await cli('groups')
      for (const r of await listRecords(db, { limit: 10 })) {
        const key = r.keyText ?? ''
        if (key === 'order-garbled') await cli('edit', r.id, '--value', '{"orderId":"order-garbled","status":"CREATED","amount":1000}', '--reason', 'repaired the truncated JSON', '--replay')
        else await cli('discard', r.id, '--reason', 'negative amount: refunded by hand')
      }
      produced++ // the repaired event comes back through the consumer
      while (!options.signal.aborted && processed + deadLettered < produced && Date.now() < deadline) await delay(100)
      if (options.console && !options.signal.aborted) {
        const approver = await createToken(db, { name: `demo-console-${Date.now().toString(36)}`, role: 'approver', owner: 'demo-console' })
        print(`console: open ${processor.url}/console and sign in with the token ${approver.token} (role approver); Ctrl-C to stop`)
        await new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }))
      }
    } finally {
      await processor.close()
    }
    await consumer.close()

    const dlqRecords = await readTopic(brokers, dlqTopic, deadLettered)
    print(`dlq: ${dlqRecords.length} record(s) in ${dlqTopic}, each with the original key, bytes and headers plus failure context:`)
    for (const r of dlqRecords) {
      const f = decodeFailureHeaders(r.headers)!
      print(`  ${r.key?.toString()} from ${f.originTopic}[${f.originPartition}]@${f.originOffset}: ${f.errorClass} ${f.errorCode} "${f.errorMessage}" attempts=${f.attempts} fingerprint=${f.errorFingerprint}`)
    }
    const overtaken = [...history].filter(([, statuses]) => statuses.some((st, i) => i > 0 && STATUSES.indexOf(st as (typeof STATUSES)[number]) < STATUSES.indexOf(statuses[i - 1] as (typeof STATUSES)[number])))
    print(`order: ${history.size} orders, ${overtaken.length === 0 ? 'no event overtook an earlier event of its order' : `OUT OF ORDER: ${overtaken.map(([o]) => o).join(', ')}`}`)
    const { rows } = await db.query<{ status: string; n: number }>('select status, count(*)::int as n from demo_orders group by status order by status')
    print(`summary: produced ${produced}, applied ${processed}, dead-lettered ${deadLettered}; orders by latest status: ${rows.map((r) => `${r.status}=${r.n}`).join(', ')}`)
    if (!options.follow && processed + deadLettered < produced) throw new Error(`only ${processed + deadLettered} of ${produced} events were handled within 60 s`)
    if (overtaken.length > 0) throw new Error(`events applied out of order for ${overtaken.map(([o]) => o).join(', ')}`)

    // Part two: the examples (effects exactly once), on the same broker and database.
    if (!options.follow && !options.signal.aborted) {
      await db.close() // the examples open it themselves (embedded PGlite allows one process at a time)
      await runExamples(bootstrap, options)
    }
  } finally {
    await consumer.close().catch((err: unknown) => print(`consumer close failed: ${(err as Error).message}`))
    await producer.close()
    await admin.close()
    await db.close()
    if (cluster) {
      print('kafka: stopping the local broker')
      await cluster.close()
    }
  }
}

const EXAMPLES = new URL('../../examples/', import.meta.url)
const ROOT = new URL('../../', import.meta.url)

/** Runs `node <args>` in the package root, each output line to `line`; rejects on a non-zero exit. */
function runChild(args: string[], env: Record<string, string>, line: (text: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT.pathname, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on('line', line)
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`lifeline ${args.slice(1).join(' ')} exited with ${code}`))))
  })
}

/**
 * Runs examples/orders (inbox + state machine under duplicated, shuffled events) and examples/coupons
 * (Redis stock, compensation, reconciliation) as child processes, printing their output. Only in a checkout
 * (the examples are not part of the package); coupons needs Redis (REDIS_URL, default 127.0.0.1:6379).
 */
async function runExamples(bootstrap: string, options: DemoOptions): Promise<void> {
  const { print } = options
  if (!existsSync(new URL('orders/run.ts', EXAMPLES))) {
    print('examples: not in this installation (they live in the repository: examples/)')
    return
  }
  for (const [name, args] of [['orders', ['8']], ['coupons', ['20', '60']]] as const) {
    if (name === 'coupons' && !(await redisReachable())) {
      print(`example: coupons skipped — no Redis at ${process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'} (set REDIS_URL)`)
      continue
    }
    print(`example: ${name} (examples/${name}/run.ts) — ${name === 'orders' ? 'inbox + state-machine guard: every event applied once, late transitions ignored with a reason' : 'Redis stock via Lua, inbox, compensation on final failure, Redis/PostgreSQL reconciliation'}`)
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', new URL(`${name}/run.ts`, EXAMPLES).pathname, ...args], {
        env: { ...process.env, KAFKA_BOOTSTRAP: bootstrap, LIFELINE_LOG_LEVEL: process.env.LIFELINE_LOG_LEVEL ?? 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      const stop = () => child.kill('SIGTERM')
      options.signal.addEventListener('abort', stop, { once: true })
      for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on('line', (line) => print(`  [${name}] ${line}`))
      child.once('error', reject)
      child.once('exit', (c) => {
        options.signal.removeEventListener('abort', stop)
        resolve(c ?? 1)
      })
    })
    if (code !== 0) throw new Error(`the ${name} example failed (exit code ${code})`)
  }
}

function redisReachable(): Promise<boolean> {
  const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port || 6379), timeout: 1000 })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the demo topics to be deleted')
    await delay(100)
  }
}

async function readTopic(brokers: string[], topic: string, count: number) {
  const reader = createKafkaConsumer({ brokers, groupId: `lifeline-demo-reader-${Date.now()}` })
  reader.subscribe([topic])
  const out = []
  const deadline = Date.now() + 20_000
  try {
    while (out.length < count && Date.now() < deadline) out.push(...(await reader.poll(100, 200)))
  } finally {
    await reader.close()
  }
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset)
}
