/**
 * The live demo: a real local Kafka broker, the embedded database (or DATABASE_URL), an order-events
 * producer and a Lifeline consumer that applies each event to a table. Some events fail transiently
 * (retried with backoff, then applied), some are poison (dead-lettered with full failure context); the
 * demo prints every step and then reads the dead-letter topic back.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startKafka, type KafkaCluster } from '../dev/kafka-launcher.js'
import { clientVersion, createAdmin, createConsumer as createKafkaConsumer, createProducer } from '../kafka/index.js'
import type { ProduceRecord } from '../kafka/types.js'
import { NonRetriableError } from '../runtime/classify.js'
import { createConsumer } from '../runtime/consumer.js'
import { decodeFailureHeaders } from '../runtime/headers.js'
import { dlqTopicName } from '../runtime/options.js'
import { databaseFromEnv, describeDatabase, loadMigrations, migrate } from '../store/index.js'

export interface DemoOptions {
  orders: number
  follow: boolean
  signal: AbortSignal
  print(line: string): void
}

const TOPIC = 'demo.orders'
const SERVICE = 'demo'
const STATUSES = ['CREATED', 'PAID', 'SHIPPED'] as const

interface OrderEvent {
  orderId: string
  status: string
  amount: number
  /** The demo's fault injection: fail this many attempts with a timeout first. */
  flaky?: number
}

/** Order events: every 5th order's PAID is flaky (2 timeouts), every 7th order has a negative amount (poison). */
export function demoEvents(from: number, count: number): ProduceRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i
    const order = Math.floor(n / STATUSES.length)
    const status = STATUSES[n % STATUSES.length]!
    const event: OrderEvent = { orderId: `order-${order}`, status, amount: order % 7 === 6 ? -1 : 1000 + (order % 5) * 250 }
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
  const attempts = new Map<string, number>()
  const consumer = createConsumer<OrderEvent>({
    brokers,
    groupId: 'lifeline-demo',
    service: SERVICE,
    topics: [TOPIC],
    retry: { maxAttempts: 4, backoff: { type: 'exponential', baseMs: 200, maxMs: 2000, jitter: 'equal' } },
    handler: async ({ value, offset, partition, attempt }) => {
      const id = `${partition}:${offset}`
      if (value.amount < 0) throw new NonRetriableError(`order ${value.orderId} has a negative amount`, { code: 'E_NEGATIVE_AMOUNT' })
      if ((value.flaky ?? 0) >= attempt) throw Object.assign(new Error('payment gateway timed out'), { code: 'E_GATEWAY_TIMEOUT' })
      attempts.set(id, attempt)
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
    const stale = (await admin.listTopics()).filter((t) => t === TOPIC || t === dlqTopic)
    if (stale.length > 0) await admin.deleteTopics(stale)
    await waitUntil(async () => !(await admin.listTopics()).some((t) => stale.includes(t)))
    await admin.createTopics([{ topic: TOPIC, partitions: 3 }])
    print(`topic: ${TOPIC} (3 partitions); its DLQ ${dlqTopic} is created by the consumer at start`)
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
    while (!options.signal.aborted && (options.follow || (processed + deadLettered < produced && Date.now() < deadline))) {
      await delay(100)
      if (options.follow && Date.now() - lastProduce > 1000) {
        lastProduce = Date.now()
        await produce(1)
      }
    }
    await consumer.close()

    const dlqRecords = await readTopic(brokers, dlqTopic, deadLettered)
    print(`dlq: ${dlqRecords.length} record(s) in ${dlqTopic}, each with the original key, bytes and headers plus failure context:`)
    for (const r of dlqRecords) {
      const f = decodeFailureHeaders(r.headers)!
      print(`  ${r.key?.toString()} from ${f.originTopic}[${f.originPartition}]@${f.originOffset}: ${f.errorClass} ${f.errorCode} "${f.errorMessage}" attempts=${f.attempts} fingerprint=${f.errorFingerprint}`)
    }
    const { rows } = await db.query<{ status: string; n: number }>('select status, count(*)::int as n from demo_orders group by status order by status')
    print(`summary: produced ${produced}, applied ${processed}, dead-lettered ${deadLettered}; orders by latest status: ${rows.map((r) => `${r.status}=${r.n}`).join(', ')}`)
    if (!options.follow && processed + deadLettered < produced) throw new Error(`only ${processed + deadLettered} of ${produced} events were handled within 60 s`)
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
